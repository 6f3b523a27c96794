"""Exit codes: the documented table, a policy violation's own code, the last-resort handler for
bugs, and traffic steps given in percent."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import fsspec
import pytest
from fsspec.spec import AbstractFileSystem

from casstore import InvalidInputError, Repository
from casstore.cli import EXIT_INTERNAL, EXIT_TABLE
from casstore.cli._common import EXIT_VIOLATION, parse_steps
from tests import series
from tests.cli_helpers import run

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A memory store with m 1.0.0 (accuracy 0.9, current) and 1.0.1 (accuracy 0.8)."""
    url = f"memory://exit-{uuid.uuid4().hex}"
    repo = Repository(url)
    base = series.tensors(n=3, size=4096)
    for i, acc in enumerate((0.9, 0.8)):
        f = series.save(tmp_path / f"v{i}" / "m.safetensors", series.finetune(base, seed=i))
        repo.commit("m", [f], metrics={"accuracy": acc})
    return url


def test_help_lists_every_exit_code_end_to_end():
    r = run("--help", subprocess=True)
    assert r.code == 0
    epilog = r.out.split("exit codes:", 1)[1]
    for code, text in EXIT_TABLE:
        assert re.search(rf"^\s+{code}\s+{re.escape(text)}$", epilog, re.M), (code, epilog)


def test_readme_lists_every_exit_code():
    listed = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", README.read_text(), re.M))
    assert {int(c) for c in listed} == {code for code, _ in EXIT_TABLE}


def test_codes_are_distinct():
    codes = [code for code, _ in EXIT_TABLE]
    assert len(codes) == len(set(codes)) and EXIT_VIOLATION not in (1, 2, 3, EXIT_INTERNAL)


def test_check_violation_has_its_own_exit_code(store: str, tmp_path: Path):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"rules": [{"metric": "accuracy", "threshold": 0.01}]}))
    ok = run("check", "m", "--policy", policy, "--candidate", "1.0.0", "--dry-run", store=store)
    assert ok.code == 0, ok.err
    bad = run("check", "m", "--policy", policy, "--candidate", "1.0.1", "--dry-run", store=store)
    assert bad.code == EXIT_VIOLATION == 8, bad.err
    assert "1 violation(s)" in bad.out and "accuracy 0.9 -> 0.8" in bad.out
    missing = run("check", "nope", "--policy", policy, store=store)
    assert missing.code == 3 and "nope" in missing.err


def test_promote_one_percent_starts_a_one_percent_canary(store: str):
    r = run("promote", "m", "1.0.1", "--steps", "1%", "--json", store=store)
    assert r.code == 0, r.err
    split = Repository(store).refs.get("m", "current").split
    assert split is not None and split.weight == pytest.approx(0.01)
    assert split.base.version == "1.0.0" and split.candidate.version == "1.0.1"
    r = run("advance", "m", "--weight", "5%", store=store)
    assert r.code == 0, r.err
    assert Repository(store).refs.get("m", "current").split.weight == pytest.approx(0.05)


def test_promote_in_one_step_of_the_whole_traffic_moves_the_ref(store: str):
    """``--steps 1`` (100 % at once) is a plain move; it used to build a split of weight 1
    first and fail inside the model's validation as an internal error (exit 70)."""
    r = run("promote", "m", "1.0.1", "--steps", "1", store=store)
    assert r.code == 0, r.err
    value = Repository(store).refs.get("m", "current")
    assert value.split is None and value.target is not None
    assert value.target.version == "1.0.1"


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ("1%", (0.01,)),
        ("1%,50%,100%", (0.01, 0.5, 1.0)),
        ("1,50,100", (0.01, 0.5, 1.0)),  # any value above 1: all percents
        ("10, 50 ,100", (0.1, 0.5, 1.0)),
        ("0.1,0.5,1", (0.1, 0.5, 1.0)),  # fractions
        ("1", (1.0,)),  # the whole traffic
        ("0.5%", (0.005,)),
    ],
)
def test_steps_in_percent_or_fractions(text: str, steps: tuple[float, ...]):
    assert parse_steps(text) == pytest.approx(steps)


@pytest.mark.parametrize("text", ["", ",", "x", "10,x", "nan", "inf", "%", "1%%"])
def test_bad_steps_refused(text: str):
    with pytest.raises(InvalidInputError, match="--steps"):
        parse_steps(text)


class _BrokenFileSystem(AbstractFileSystem):
    """A third-party fsspec plugin with a bug: its constructor raises RuntimeError."""

    protocol = "casstore-broken"

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError("plugin bug")


@pytest.fixture
def broken_scheme() -> str:
    fsspec.register_implementation(_BrokenFileSystem.protocol, _BrokenFileSystem, clobber=True)
    return f"{_BrokenFileSystem.protocol}://x"


def test_unexpected_error_is_one_line_with_its_own_code(broken_scheme: str):
    r = run("models", store=broken_scheme)
    assert r.code == EXIT_INTERNAL == 70
    assert r.err.startswith("casstore: internal error: RuntimeError: plugin bug")
    assert r.err.count("\n") == 1 and "Traceback" not in r.err


def test_debug_shows_the_traceback(broken_scheme: str):
    r = run("models", store=broken_scheme, env={"CASSTORE_DEBUG": "1"})
    assert r.code == EXIT_INTERNAL
    assert "Traceback" in r.err and r.err.rstrip().splitlines()[-1].startswith(
        "casstore: internal error: RuntimeError: plugin bug"
    )
