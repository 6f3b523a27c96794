"""Issue 15 item 5: hooks have timeouts, a failed notify is reported (stderr, JSON, exit 9),
the health-check environment is what ``--help`` says, and ``--pre-check`` runs against the
target before the ref moves."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from casstore.ops.hooks import CHECK_ENV
from tests.cli_helpers import committed_store, run


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return committed_store(tmp_path, 3)


def _current(store: Path) -> str:
    return run("resolve", "m", store=store).out.strip()


@pytest.mark.parametrize(
    ("notify", "says"),
    [("exit 7", "notify command exited 7: exit 7"),
     ("casstore-no-such-command-xyz", "notify command exited 127"),
     ("echo broken >&2; exit 1", "(broken)")],
)
def test_hooks_failed_notify_is_reported(store: Path, notify: str, says: str):
    r = run("promote", "m", "1.0.1", "--notify", notify, "--json", store=store)
    assert r.code == 9, (r.code, r.err)
    assert says in r.err and "warning" in r.err and "the move stands" in r.err
    assert says in r.json()["notify_failures"][0]
    assert _current(store) == "1.0.1"  # the move stands
    r = run("promote", "m", "1.0.2", "--notify", notify, store=store)
    assert r.code == 9 and r.out.startswith("ok: ") and says in r.err


def test_hooks_notify_ok_exits_0(store: Path, tmp_path: Path):
    got = tmp_path / "event.json"
    r = run("promote", "m", "1.0.1", "--notify", f"cat > {got}", store=store)
    assert r.code == 0 and r.err == ""
    assert '"op": "promote"' in got.read_text()


def test_hooks_timeout_bounds_every_hook(store: Path):
    r = run("promote", "m", "1.0.1", "--notify", "sleep 30", "--hook-timeout", "0.3",
            store=store)
    assert r.code == 9 and "timed out after 0.3s" in r.err
    r = run("promote", "m", "1.0.2", "--health-check", "sleep 30", "--hook-timeout", "0.3",
            store=store)
    assert r.code == 1 and "health-check timed out after 0.3s" in r.out
    assert _current(store) == "1.0.1"  # switched back
    r = run("promote", "m", "1.0.2", "--pre-check", "sleep 30", "--hook-timeout", "0.3",
            store=store)
    assert r.code == 1 and "pre-check timed out after 0.3s" in r.out
    for bad in ("0", "-1", "x"):
        assert run("promote", "m", "1.0.2", "--hook-timeout", bad, store=store).code == 2


def test_hooks_health_check_environment_is_documented(store: Path, tmp_path: Path):
    seen = tmp_path / "env"
    r = run("promote", "m", "1.0.1", "--health-check", f"env > {seen}", store=store)
    assert r.code == 0, r.out + r.err
    env = dict(line.split("=", 1) for line in seen.read_text().splitlines() if "=" in line)
    name = run("show", "m", "1.0.1", "--json", store=store).json()
    assert {k: env.get(k) for k in CHECK_ENV} == {
        "CASSTORE_MODEL": "m",
        "CASSTORE_VERSION": "1.0.1",
        "CASSTORE_VERSION_NAME": name["name"],
        "CASSTORE_MANIFEST": name["id"],
        "CASSTORE_REF": "current",
        "CASSTORE_STORE": str(store),
        "CASSTORE_STAGE": "health-check",
    }
    help_text = " ".join(run("promote", "--help").out.split())
    assert all(k in help_text for k in CHECK_ENV)


def test_hooks_pre_check_runs_before_the_ref_moves(store: Path, tmp_path: Path):
    seen = tmp_path / "seen"
    resolve = " ".join(map(shlex.quote, [sys.executable, "-m", "casstore"]))
    probe = (f'{resolve} --store "$CASSTORE_STORE" resolve "$CASSTORE_MODEL" '
             f'--ref "$CASSTORE_REF" > {seen}; echo "$CASSTORE_STAGE $CASSTORE_VERSION" >> {seen}')
    r = run("promote", "m", "1.0.1", "--pre-check", probe, store=store)
    assert r.code == 0 and "pre-check passed" in r.out, r.out + r.err
    assert seen.read_text().split() == ["1.0.0", "pre-check", "1.0.1"]  # the ref had not moved
    moves = len(run("reflog", "m", "--json", store=store).json()["entries"])
    r = run("rollback", "m", "--to", "1.0.2", "--pre-check", "echo smoke failed; exit 4",
            "--json", store=store)
    assert r.code == 1 and "pre-check exited 4: smoke failed" in r.json()["message"]
    assert _current(store) == "1.0.1"
    assert len(run("reflog", "m", "--json", store=store).json()["entries"]) == moves
