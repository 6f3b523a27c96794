"""Command latency (issue 14): the commands people type in an incident or call in loops
(``refs``, ``log``, ``rollback --to``, ``status``, ``show``) import nothing they do not use.
Each runs in a fresh interpreter, which then lists what it imported. Imports made lazy are
checked too: every import inside a function names a module and attribute that exist (a typo
there would surface only when that command runs, as an internal error), and the table that
sends each command to its group's parser matches what the groups define."""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import casstore
from casstore import Repository
from casstore.cli import COMMANDS, GROUPS, build_parser
from tests.cli_helpers import run

HEAVY_PACKAGES = {"torch", "numpy", "fsspec", "s3fs", "aiohttp", "botocore", "zstandard",
                  "pyfastcdc", "safetensors", "matplotlib", "pydantic", "pydantic_core"}
"""Third-party packages no light command on a local store needs (pydantic: casstore's records
are msgspec structs; its import and first model build alone cost ~100 ms)."""

HEAVY_MODULES = (
    "casstore.chunking.detect", "casstore.chunking.registry", "casstore.chunking.torch_pickle",
    "casstore.chunking.safe_pickle", "casstore.repo.commit", "casstore.repo.checkout",
    "casstore.repo.compare", "casstore.repo.inputs", "casstore.ops.gc", "casstore.ops.transfer",
    "casstore.ops.verify", "casstore.ops.retention", "casstore.ops.regression",
    "casstore.repo.stats", "casstore.repo.storage", "casstore.repo.query",
    "casstore.repo.chunks", "casstore.chunking.base", "casstore.chunking.encodings",
    "casstore.torch", "casstore.tools", "casstore.fs", "casstore.serving.", "casstore.cli._malloc",
)
"""casstore's own code for committing, maintenance, transfers, serving and torch."""

STDLIB = ("concurrent.futures", "subprocess")
"""Thread pools (chunk transfers) and child processes (hooks): no light command starts one."""

SIGNING = ("cryptography", "casstore.ops.signing")
"""Signature code: only where a trust policy exists (none in this store) or a key is used."""

NOT_MOVING = ("casstore.ops.trust",)
"""The trust policy's models: read only by a command that moves a ref or shows signatures."""

ALLOWED = {
    "rollback": ("casstore.ops.trust",),
    "status": ("casstore.serving.acks",),
    # it lists checked signatures, and the stored bytes of the version (listed in parallel)
    "show": ("casstore.ops.signing", "casstore.ops.trust", "casstore.repo.storage",
             "concurrent.futures", "casstore.repo.chunks", "casstore.chunking."),
}
"""What a command may import (module names or their prefixes) although a rule above bans it."""

_PROBE = """
import json, sys
from casstore.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("light")
    repo = Repository(str(root / "store"))
    for i in range(2):
        (root / "in").mkdir(exist_ok=True)
        (root / "in" / "a.txt").write_text(f"version {i}")
        repo.commit("m", [root / "in"])
    return root / "store"


@pytest.mark.parametrize("argv", [
    ["refs", "m"],
    ["log", "m"],
    ["rollback", "m", "--to", "1.0.0"],
    ["status", "m"],
    ["show", "m", "1.0.1"],
], ids=lambda a: " ".join(a))
def test_light_commands_import_only_what_they_use(store: Path, argv: list[str]):
    p = subprocess.run([sys.executable, "-c", _PROBE, "--store", str(store), *argv],
                       capture_output=True, text=True, timeout=120)
    result = json.loads(p.stderr.strip().splitlines()[-1])
    assert result["code"] == 0, p.stderr
    modules = result["modules"]
    other_groups = tuple(f"casstore.cli.{g}" for g in GROUPS if g != COMMANDS[argv[0]])
    banned = HEAVY_MODULES + STDLIB + SIGNING + NOT_MOVING + other_groups
    heavy = sorted(m for m in modules if not m.startswith(ALLOWED.get(argv[0], ()))
                   and (m.split(".")[0] in HEAVY_PACKAGES or m.startswith(banned)))
    assert heavy == [], f"`casstore {' '.join(argv)}` imported {heavy}"
    if argv[0] == "rollback":  # the move did pass the trust gate (no policy: allowed)
        assert "casstore.ops.trust" in modules


def _subcommands(parser: argparse.ArgumentParser) -> list[str]:
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def test_every_command_is_routed_to_the_group_that_defines_it():
    defined = {name: g for g in GROUPS for name in _subcommands(build_parser((g,)))}
    assert defined == COMMANDS
    assert _subcommands(build_parser()) == list(defined)  # --help lists all, in group order


def test_help_and_unknown_commands_still_see_every_command():
    r = run("--help")
    assert r.code == 0 and all(name in r.out for name in COMMANDS)
    r = run("rollbak", "m")
    assert r.code == 2 and "invalid choice" in r.err and "'rollback'" in r.err
    r = run("--version")
    assert r.code == 0 and r.out.startswith("casstore ")


def _lazy_imports() -> list[tuple[str, int, str, str | None]]:
    """(file, line, module, name) of every import written inside a function in casstore."""
    root = Path(casstore.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                rel = str(path.relative_to(root.parent))
                if isinstance(node, ast.Import):
                    found += [(rel, node.lineno, a.name, None) for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found += [(rel, node.lineno, node.module, a.name) for a in node.names]
    return found


def test_every_import_inside_a_function_resolves():
    """A lazy import is executed only when its command runs; check them all here. Optional
    third-party backends that are not installed are skipped (they raise UnsupportedError or
    InvalidInputError where used, tested with those backends)."""
    broken = []
    for where, line, module, name in _lazy_imports():
        if not module.startswith("casstore"):
            continue
        mod = importlib.import_module(module)
        if name is not None and not hasattr(mod, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                broken.append(f"{where}:{line}: from {module} import {name}")
    assert broken == []


def test_help_builds_every_parser_without_library_code():
    """``casstore --help`` (the whole parser, every group) loads no third-party package but
    blake3 and none of the store, manifest or ref code: help constants live in light modules
    (e.g. :mod:`casstore.ops.rules`)."""
    probe = ("import contextlib, io, json, sys\n"
             "from casstore.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             "    code = main(['--help'])\n"
             "print(json.dumps({'code': code, 'modules': sorted(sys.modules)}))")
    p = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                       timeout=120)
    result = json.loads(p.stdout.strip().splitlines()[-1])
    assert result["code"] == 0, p.stderr
    modules = result["modules"]
    third_party = {m.split(".")[0] for m in modules} - set(sys.stdlib_module_names)
    assert third_party <= {"__main__", "casstore", "blake3", "_distutils_hack"} | {
        m for m in third_party if m.startswith("__editable__")}
    library = [m for m in modules if m.startswith(("casstore.store", "casstore.repo.manifest",
                                                   "casstore.repo.refs", "casstore.repo.catalog",
                                                   "casstore.ops.rollout", "casstore.repository"))]
    assert library == []
