"""Issue 15 item 4 through the command line: quick rollback follows the ref's reflog,
``rollback --undo`` reverts the last move, and ``--help`` says how each target is chosen."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_helpers import committed_store, run


@pytest.fixture
def four(tmp_path: Path) -> Path:
    return committed_store(tmp_path, 4)


def test_previous_stable_follows_reflog_cli(four: Path):
    """The issue's scenario: 1.0.3 then 1.0.1 on production; quick rollback returns to 1.0.3."""
    for v in ("1.0.3", "1.0.1"):
        assert run("promote", "m", v, "--ref", "production", store=four).code == 0
    r = run("rollback", "m", "--ref", "production", "--previous-stable", "--json", store=four)
    assert r.code == 0, r.err
    assert r.json()["new"]["target"]["semver"] == "1.0.3"
    r = run("rollback", "m", "--ref", "production", "--previous-stable", store=four)
    assert r.code == 3 and "served no stable version before 1.0.3" in r.err
    assert "--to VERSION" in r.err


def test_rollback_undo_cli(four: Path):
    assert run("promote", "m", "1.0.2", store=four).code == 0
    r = run("rollback", "m", "--undo", "--reason", "oops", "--json", store=four)
    assert r.code == 0, r.err
    assert (r.json()["old"]["describe"], r.json()["new"]["describe"]) == ("1.0.2", "1.0.0")
    r = run("reflog", "m", "--ref", "current", "--json", store=four)
    last = r.json()["entries"][-1]
    assert (last["op"], last["reason"]) == ("undo", "oops")
    for bad in (["--undo", "--to", "1.0.1"], ["--undo", "--previous-stable"], []):
        r = run("rollback", "m", *bad, store=four)
        assert r.code == 2, (bad, r.err)
    r = run("rollback", "m", "--undo", "--steps", "10,100", store=four)
    assert r.code == 2 and "--undo" in r.err


def test_rollback_help_says_how_each_target_is_chosen():
    r = run("rollback", "--help")
    text = " ".join(r.out.split())
    assert r.code == 0
    assert "the last version this ref served before its current one" in text
    assert "revert the ref's last move" in text and "exactly this version" in text
