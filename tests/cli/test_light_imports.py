"""Command latency (issue 14): the commands people type in an incident or call in loops
(``refs``, ``log``, ``rollback --to``, ``status``, ``show``) import nothing they do not use.
Each runs in a fresh interpreter, which then lists what it imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from casstore import Repository

HEAVY_PACKAGES = {"torch", "numpy", "fsspec", "s3fs", "aiohttp", "botocore", "zstandard",
                  "pyfastcdc", "safetensors", "matplotlib"}
"""Third-party packages no light command on a local store needs."""

HEAVY_MODULES = (
    "casstore.chunking.detect", "casstore.chunking.registry", "casstore.chunking.torch_pickle",
    "casstore.chunking.safe_pickle", "casstore.repo.commit", "casstore.repo.checkout",
    "casstore.repo.compare", "casstore.repo.inputs", "casstore.ops.gc", "casstore.ops.transfer",
    "casstore.ops.verify", "casstore.ops.retention", "casstore.ops.regression",
    "casstore.torch", "casstore.tools", "casstore.fs",
)
"""casstore's own code for committing, maintenance, transfers, serving and torch."""

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
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY_PACKAGES
                   or m.startswith(HEAVY_MODULES))
    assert heavy == [], f"`casstore {' '.join(argv)}` imported {heavy}"
