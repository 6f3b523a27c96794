"""Issue 15 item 2: one version vocabulary. Every form any output prints is accepted wherever a
version is asked for, in the CLI and the Python API alike (``parse_spec`` is the one parser)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from casstore import InvalidInputError, NotFoundError, Repository
from tests import series
from tests.cli_helpers import run


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("forms")
    store = f"memory://forms-{uuid.uuid4().hex}"
    base = series.tensors(n=3, size=4096)
    repo = Repository(store)
    for i in range(2):
        f = series.save(root / f"v{i}" / "m.safetensors", series.finetune(base, seed=i))
        repo.commit("m", [f], metrics={"accuracy": 0.9 + i / 100})
    repo.promote("m", "1.0.1", ref="production")
    return {"store": store, "root": str(root)}


def _forms(store: str) -> dict[str, str]:
    """Every way casstore's own output names version 1.0.1 (production points at it)."""
    doc = run("show", "m", "1.0.1", "--json", store=store).json()
    log = run("log", "m", "--json", store=store).json()["versions"][0]  # newest first
    return {
        "full name": doc["name"],
        "version field": doc["version"],  # vX.Y.Z_YYYYMMDD_HHMMSS, the seed document's format
        "log version": log["version"],
        "semver": doc["semver"],
        "v semver": "v" + doc["semver"],
        "@ref": "@production",
        "bare ref": "production",
        "latest": "latest",
    }


COMMANDS = [
    ["show", "m", "SPEC", "--json"],
    ["cat", "m", "SPEC"],
    ["checkout", "m", "SPEC", "-o", "OUT"],
    ["diff", "m", "1.0.0", "SPEC", "--json"],
    ["tag", "m", "SPEC", "seen"],
    ["untag", "m", "SPEC", "seen"],
    ["promote", "m", "SPEC", "--ref", "staging"],
    ["rollback", "m", "--to", "SPEC", "--ref", "staging"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: a[0])
def test_version_forms_accepted_by_every_command(world: dict[str, str], argv: list[str]):
    store = world["store"]
    for name, spec in _forms(store).items():
        out = str(Path(world["root"]) / f"out-{uuid.uuid4().hex}")
        args = [spec if a == "SPEC" else out if a == "OUT" else a for a in argv]
        if argv[0] == "untag":
            assert run("tag", "m", "1.0.1", "seen", store=store).code == 0
        r = run(*args, store=store)
        assert r.code == 0, (name, spec, r.err)
        if argv[0] == "show":
            assert r.json()["semver"] == "1.0.1", name


def test_version_forms_accepted_by_the_python_api(world: dict[str, str]):
    repo = Repository(world["store"])
    for name, spec in _forms(world["store"]).items():
        assert repo.get_version("m", spec).version == "1.0.1", name


def test_version_forms_refused_consistently_with_a_hint(world: dict[str, str]):
    repo = Repository(world["store"])
    stamp = _forms(world["store"])["version field"]
    wrong_time = stamp[:-1] + ("1" if stamp[-1] != "1" else "2")
    for spec, error, code, hint in [
        ("1.2", InvalidInputError, 2, "v1.2.0_YYYYMMDD_HHMMSS"),
        (wrong_time, NotFoundError, 3, "has no version"),
        ("nosuchref", NotFoundError, 3, "was read as a ref name"),
        ("other_v1.0.1_20260101_000000", InvalidInputError, 2, "belongs to model 'other'"),
    ]:
        with pytest.raises(error, match=hint):
            repo.get_version("m", spec)
        r = run("show", "m", spec, store=world["store"])
        assert r.code == code and hint in r.err, (spec, r.err)
