"""Every option of every command, fed malformed values: one line on stderr, never a traceback,
an exit code from the documented table (never the internal-error code).

The cases come from walking the real argparse tree, so a new command or option is covered (a
new command also needs a valid base invocation in ``BASE``, which a test checks).
"""

from __future__ import annotations

import argparse
import json
import uuid
from pathlib import Path

import pytest

from casstore import Repository
from casstore.cli import EXIT_INTERNAL, EXIT_TABLE, build_parser
from tests import series
from tests.cli_helpers import run
from tests.keys import key_pair

# A valid invocation of each command against the fixture store: positionals (all of them, in
# order) and options. Placeholders: FILE (a model file), OUT (a fresh folder), POLICY (a
# regression policy file), OTHER / SRC / DST (other stores), KEY / PUB (a signing key pair).
BASE: dict[str, tuple[list[str], dict[str, str]]] = {
    "init": ([], {}),
    "commit": (["m", "FILE"], {}),
    "log": (["m"], {}),
    "show": (["m", "1.0.0"], {}),
    "query": (["m"], {}),
    "diff": (["m", "1.0.0", "1.0.1"], {}),
    "tag": (["m", "1.0.0", "t"], {}),
    "untag": (["m", "1.0.0", "t"], {}),
    "checkout": (["m", "1.0.0"], {"--output": "OUT"}),
    "cat": (["m", "1.0.0", "model.safetensors"], {}),
    "stats": (["m"], {}),
    "models": ([], {}),
    "refs": (["m"], {}),
    "reflog": (["m"], {}),
    "promote": (["m", "1.0.1"], {}),
    "rollback": (["m"], {"--to": "1.0.0"}),
    "advance": (["m"], {"--ref": "canary"}),
    "abort": (["m"], {"--ref": "canary"}),
    "resolve": (["m"], {}),
    "check": (["m"], {"--policy": "POLICY", "--dry-run": ""}),
    "gc": ([], {"--dry-run": "", "--keep-last": "5"}),
    "rm": (["m", "1.0.2"], {"--dry-run": ""}),
    "policy": (["show"], {}),
    "verify": ([], {}),
    "repair": ([], {"--from": "OTHER"}),
    "push": (["OTHER", "m", "@current"], {}),
    "pull": (["OTHER", "m", "@current"], {}),
    "replicate": (["SRC", "DST"], {}),
    "status": (["m"], {}),
    "watch": (["m"], {"--policy": "POLICY", "--once": "", "--dry-run": ""}),
    "sign": (["m", "1.0.0"], {"--key": "KEY"}),
    "verify-signature": (["m", "1.0.0"], {"--trusted-key": "PUB"}),
    "trust": (["show"], {}),
    "tune": (["FILE"], {}),
    "demo": ([], {"--size-mb": "1"}),
}

# Malformed values: empty, path escapes, not JSON, missing files, bad versions and URLs,
# non-numbers. All relative (the commands run in a scratch folder), none starts with "-".
TEXT = ["", " ", "../x", "a/b", "{not json", "[1]", '{"data_count": "many"}', "nonexistent/file",
        "@nonexistent/file", "BADFILE", "@BADFILE", "1.2.x", "stor://x", "nan", "x=nan", "%"]
NUMBER = ["", "x", "nan", "inf", "-1", "1e999", "0"]
CHOICE = ["", "nope"]
# what a bad value may not be for these (it would reach the network or run for long)
STORE = ["", "../x", "a/b", "nonexistent/file", "BADFILE", "stor://x", "memory://", "file://"]

CODES = {code for code, _ in EXIT_TABLE} - {EXIT_INTERNAL}


def _commands() -> dict[str, argparse.ArgumentParser]:
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def _values(action: argparse.Action) -> list[str]:
    if action.dest in ("store", "replica", "remote", "source", "dest"):
        return STORE
    if action.choices is not None:
        return CHOICE + TEXT[2:4]
    if action.type is not None and action.type is not str:
        return NUMBER
    return TEXT


def _cases() -> list[tuple[str, str, int | str]]:
    """(command, option string or positional index, ...) for every value-taking argument."""
    out = []
    for name, parser in _commands().items():
        index = 0
        for action in parser._actions:
            if action.nargs == 0 or isinstance(action, argparse._HelpAction):
                continue
            if action.option_strings:
                flag = max(action.option_strings, key=len)
                out.append((name, flag, -1))
            else:
                out.append((name, action.dest, index))
                index += 1
    return out


CASES = _cases()

# Cases the library has to fix (repository.py / repo / ops belong to the lead): the CLI test
# stays here, strict, so it turns red the moment the library is fixed and the mark can go.
LIBRARY: dict[tuple[str, str], str] = {}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return _make_world(tmp_path_factory.mktemp("bad-values"))


def _make_world(root: Path) -> dict[str, str]:
    base = series.tensors(n=3, size=4096)
    f1 = series.save(root / "in" / "v1" / "model.safetensors", base)
    f2 = series.save(root / "in" / "v2" / "model.safetensors", series.finetune(base))
    tag = uuid.uuid4().hex
    store, other = f"memory://bad-{tag}", f"memory://bad-other-{tag}"
    repo = Repository(store)
    repo.commit("m", [f1], metrics={"accuracy": 0.9})
    repo.commit("m", [f2], metrics={"accuracy": 0.95}, ref="current")
    repo.commit("m", [f2], version="1.0.2")  # no ref points at it: rm --dry-run may take it
    repo.promote("m", "1.0.0", ref="canary")
    repo.start_split("m", "1.0.1", ref="canary", steps=(0.01, 0.02, 0.03, 0.04, 0.05))
    assert run("replicate", store, other).code == 0
    policy = root / "policy.json"
    policy.write_text(json.dumps({"rules": [{"metric": "accuracy", "threshold": 0.01}]}))
    bad = root / "bad.json"
    bad.write_bytes(b"{not json \xff")
    (root / "work").mkdir()
    key, pub = key_pair(root / "keys", "k")
    repo.sign("m", "1.0.0", key.read_bytes())
    return {
        "KEY": str(key),
        "PUB": str(pub),
        "store": store,
        "FILE": str(f1),
        "OUT": str(root / "out"),
        "POLICY": str(policy),
        "OTHER": other,
        "SRC": other,
        "DST": f"memory://bad-dst-{tag}",
        "BADFILE": str(bad),
        "cwd": str(root / "work"),
    }


def _argv(world: dict[str, str], command: str, where: str, index: int, value: str) -> list[str]:
    positionals, options = BASE[command]
    positionals = [world.get(p, p) for p in positionals]
    options = {k: world.get(v, v) for k, v in options.items()}
    store = world["store"]
    value = value.replace("BADFILE", world["BADFILE"])
    if where == "":
        pass
    elif where == "--store":
        store = value
    elif index >= 0:
        positionals[index] = value
    else:
        options[where] = value
    flags = [f"{k}={v}" if v or k == where else k for k, v in options.items()]
    return [command, *flags, f"--store={store}", *positionals]


def test_every_command_has_a_base_invocation():
    assert set(BASE) == set(_commands())


def test_nul_byte_refused():
    r = run("log", "m\x00", store="memory://x")
    assert r.code == 2 and r.err == "casstore: error: an argument contains a NUL byte\n"


def test_base_invocations_work(tmp_path: Path):
    # a world of its own: the bad-value cases share theirs, and one that is accepted (a
    # checkout into OUT, an advance of the split) changes what the next invocation finds
    world = _make_world(tmp_path)
    for command in BASE:
        if command in ("commit", "tune", "demo"):
            continue  # the slow ones; their bad values still run below
        r = run(*_argv(world, command, "", -2, ""), cwd=Path(world["cwd"]))
        assert r.code in (0, 8), (command, r.code, r.err)


@pytest.mark.parametrize(
    ("command", "where", "index"),
    [
        pytest.param(
            *c,
            id=f"{c[0]} {c[1]}",
            marks=[pytest.mark.xfail(strict=True, reason=LIBRARY[c[:2]])]
            if c[:2] in LIBRARY
            else [],
        )
        for c in CASES
    ],
)
def test_bad_values_fail_cleanly(world: dict[str, str], command: str, where: str, index: int):
    action = next(
        a
        for a in _commands()[command]._actions
        if (where in a.option_strings if index < 0 else a.dest == where)
    )
    problems = []
    for value in _values(action):
        argv = _argv(world, command, where, index, value)
        r = run(*argv, cwd=Path(world["cwd"]))
        err_lines = r.err.strip().splitlines()
        if (
            r.code not in CODES
            or "Traceback" in r.err
            or len(err_lines) > 1
            or (r.code not in (0, 1, 8) and len(err_lines) != 1)
        ):
            problems.append(f"{argv!r}: exit {r.code}: {r.err.strip()[-300:]}")
    assert not problems, "\n".join(problems)
