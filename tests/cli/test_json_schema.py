"""Issue 15 item 3: one JSON shape per thing, for every command (the parser is walked, so a new
command is covered): ``--json`` prints exactly one JSON document; every ``version`` field is the
requirements document's ``vX.Y.Z_YYYYMMDD_HHMMSS``; every version reference carries ``semver``,
``version``, ``name`` and ``id``; a model is ``model_name``; an error is
``{"error": {"type", "message", "exit_code"}}`` with the exit code the process returns."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_bad_values import BASE, _argv, _commands, world  # noqa: F401
from tests.cli_helpers import run

STAMPED = re.compile(r"v\d+\.\d+\.\d+_\d{8}_\d{6}")


def schema_problems(doc: Any, where: str = "$") -> list[str]:
    """What in ``doc`` breaks the documented shapes."""
    out: list[str] = []
    if isinstance(doc, dict):
        if "version" in doc and doc["version"] is not None and (
            not isinstance(doc["version"], str) or not STAMPED.fullmatch(doc["version"])
        ):
            out.append(f"{where}.version = {doc['version']!r} is not vX.Y.Z_YYYYMMDD_HHMMSS")
        if "semver" in doc and not {"version", "name", "id"} <= set(doc):
            out.append(f"{where}: a version reference without version/name/id: {sorted(doc)}")
        if "model" in doc:
            out.append(f"{where}.model: the field is model_name")
        for k, v in doc.items():
            out += schema_problems(v, f"{where}.{k}")
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += schema_problems(v, f"{where}[{i}]")
    return out


def error_problems(doc: Any, code: int) -> list[str]:
    if not isinstance(doc, dict) or set(doc) != {"error"}:
        return [f"not an error document: {doc!r}"]
    err = doc["error"]
    if set(err) != {"type", "message", "exit_code"} or err["exit_code"] != code:
        return [f"error document {err!r} (process exit {code})"]
    return []


@pytest.mark.parametrize("command", sorted(BASE))
def test_json_schema_of_every_command(world: dict[str, str], command: str):  # noqa: F811
    argv = [*_argv(world, command, "", -2, ""), "--json"]
    r = run(*argv, cwd=Path(world["cwd"]))
    try:
        doc = json.loads(r.out)
    except ValueError:
        pytest.fail(f"{command} --json printed no single JSON document: {r.out[:300]!r}")
    if r.code in (0, 8, 9):
        assert not schema_problems(doc), (command, schema_problems(doc))
    else:
        assert not error_problems(doc, r.code), (command, r.err)


@pytest.mark.parametrize("command", sorted(BASE))
def test_json_schema_of_every_error(world: dict[str, str], command: str):  # noqa: F811
    argv = [*_argv(world, command, "", -2, ""), "--json", "--no-such-option"]
    r = run(*argv, cwd=Path(world["cwd"]))
    assert r.code == 2
    assert not error_problems(json.loads(r.out), 2)
    assert len(r.err.strip().splitlines()) == 1  # the human line stays on stderr


def test_json_schema_not_found_error(world: dict[str, str]):  # noqa: F811
    r = run("show", "m", "9.9.9", "--json", store=world["store"])
    assert r.code == 3
    assert json.loads(r.out)["error"]["type"] == "NotFoundError"
