"""Issue 15 item 10: the README runs as written. Every command of its ``bash`` blocks runs, in
order, in one scratch folder (the default store ``./.casstore``, which ``casstore demo``
fills), except the lines that need what a test cannot have (installs, cloud buckets, a
watcher that runs until stopped): :data:`SKIP` says which and why. The README's command
list matches ``casstore --help``."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from casstore.cli import build_parser
from tests import series
from tests.cli_helpers import run

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

SKIP = {
    "pip": "installs packages",
    "apt-get": "installs packages",
    "export": "points at a cloud bucket",
    "python -m pytest": "the test suite itself",
    "python -m benchmarks": "benchmarks take minutes",
}
"""Commands (by their first words) the test does not run, and why."""
REMOTE = re.compile(r"\b(s3|az|gs|abfs)://")  # needs a cloud bucket


def bash_blocks(text: str) -> list[list[str]]:
    """The commands of each ```bash block: continuations joined, ``;``/``&&`` split."""
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    out = []
    for block in blocks:
        lines = block.replace("\\\n", " ").splitlines()
        cmds = []
        for line in lines:
            for part in re.split(r" ; | && ", line):
                part = part.strip()
                if part and not part.startswith("#"):
                    cmds.append(part)
        out.append(cmds)
    return out


def _skip_reason(cmd: str) -> str | None:
    for prefix, why in SKIP.items():
        if cmd.startswith(prefix):
            return why
    if REMOTE.search(cmd):
        return "needs a cloud bucket"
    if cmd.startswith("casstore watch") and "--once" not in cmd:
        return "runs until stopped"
    return None


def _expected_code(cmd: str) -> int:
    m = re.search(r"\bexit (\d+)\s*$", cmd.partition("#")[2])
    return int(m.group(1)) if m else 0


def _scratch(root: Path) -> None:
    """What the README's commands name: checkpoints, hook scripts, policy files."""
    base = series.tensors(n=6)
    series.save(root / "checkpoint" / "model.safetensors", base)
    series.save(root / "checkpoint-2" / "model.safetensors", series.finetune(base))
    series.save(root / "checkpoints" / "a.safetensors", base)
    series.save(root / "checkpoints" / "b.safetensors", series.finetune(base))
    for name, body in {"smoke-test.sh": "exit 0", "smoke.sh": "exit 0", "page.sh": "cat >/dev/null",
                       "prom-query.sh": "echo '{}'"}.items():
        (root / name).write_text(f"#!/bin/sh\n{body}\n")
        (root / name).chmod(0o755)
    (root / "policy.json").write_text(json.dumps(
        {"rules": [{"metric": "accuracy", "threshold": 0.05}]}))
    watch = re.search(r"```json\n(\{\n  \"rules\".*?)```", README.read_text(), re.S)
    assert watch, "the README's watch policy example"
    (root / "watch.json").write_text(watch.group(1))


def _curl(url: str) -> dict:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.loads(r.read())
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.timeout(900)
def test_readme_command_blocks_run(tmp_path: Path):
    pytest.importorskip("torch")
    _scratch(tmp_path)
    ran, skipped, servers = [], [], []
    try:
        for block in bash_blocks(README.read_text()):
            for cmd in block:
                why = _skip_reason(cmd)
                if why:
                    skipped.append((cmd, why))
                    continue
                words = shlex.split(cmd, comments=True)
                if words[:2] == ["python", "examples/serve_http.py"] and words[-1] == "&":
                    servers.append(subprocess.Popen(
                        [sys.executable, str(ROOT / "examples" / "serve_http.py"), *words[2:-1]],
                        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                    ran.append(cmd)
                    continue
                if words[0] == "curl":
                    doc = _curl("http://" + words[1])
                    assert "version" in doc, (cmd, doc)
                    ran.append(cmd)
                    continue
                if words[0] in ("openssl", "model_signing"):  # the Signing section's tools
                    argv = words if words[0] == "openssl" else [
                        sys.executable, "-m", "model_signing", *words[1:]]
                    p = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True,
                                       timeout=120)
                    assert p.returncode == _expected_code(cmd), (cmd, p.stderr)
                    ran.append(cmd)
                    continue
                assert words[0] == "casstore", f"README command not covered by the test: {cmd}"
                out_file = None
                if ">" in words:
                    i = words.index(">")
                    words, out_file = words[:i], words[i + 1]
                r = run(*words[1:], cwd=tmp_path, binary=out_file is not None)
                assert r.code == _expected_code(cmd), (cmd, r.code, r.err, r.out)
                if out_file:
                    (tmp_path / out_file).write_bytes(r.out)
                ran.append(cmd)
    finally:
        for p in servers:
            p.terminate()
            p.wait(10)
    assert len(ran) >= 40, ran  # the test runs the document, not a few lines of it
    assert {why for _, why in skipped} <= set(SKIP.values()) | {
        "needs a cloud bucket", "runs until stopped"}


def test_readme_command_reference_matches_help():
    """Every command ``casstore --help`` lists appears in the README's command blocks, and
    every ``casstore X`` there is a real command."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    commands = set(sub.choices)
    used = {shlex.split(c)[1] for block in bash_blocks(README.read_text()) for c in block
            if c.startswith("casstore ") and not c.startswith("casstore --")}
    assert used <= commands, used - commands
    assert commands <= used, f"commands --help lists but the README never shows: {commands - used}"
    text = run("--help").out
    assert all(c in text for c in commands)


def test_ci_runs_the_readme_test_command():
    """CI runs what the README's second command runs (after its install)."""
    readme = re.search(r"^pip install torch==\S+ -e '\.\[test\]' && (.+)$", README.read_text(),
                       re.M)
    assert readme is not None
    ci = (ROOT / ".ci" / "run").read_text().rstrip().splitlines()[-1]
    assert ci == readme.group(1)
    assert "-m slow" in ci  # the stress tests run in CI too
