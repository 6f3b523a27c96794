"""Issue 15 item 7: ``--wait`` is honest. No live follower is an error unless
``--allow-no-followers``; a follower that failed to take the move ends the wait at once;
``advance``/``abort`` wait too; ``status`` clears a follower's error once it recovers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from casstore import Repository
from casstore.serving import Follower, read_acks
from casstore.store import open_store
from casstore.testing.stores import FaultInjectingStore
from tests.cli_helpers import run
from tests.serve.test_follower import weights

torch = pytest.importorskip("torch")

import casstore.torch as ct  # noqa: E402


@pytest.fixture
def store(tmp_path: Path) -> str:
    store = str(tmp_path / "s")
    v1 = weights(1)
    ct.save(v1, store, "m")
    ct.save(weights(2, base=v1, changed=range(2)), store, "m")
    bad = dict(v1, **{"layer0.weight": torch.full((16,), float("nan"))})
    ct.save(bad, store, "m")  # 1.0.2 fails the follower's health check
    return store


def _follower(store: str | Repository) -> Follower:
    return Follower(
        store, "m", interval=0.05, heartbeat=0.1, follower_id="f",
        health_check=lambda sd, v: bool(torch.isfinite(sd["layer0.weight"]).all()),
    )


def test_wait_with_no_live_followers_fails_unless_allowed(store: str):
    r = run("promote", "m", "1.0.1", "--wait", "--timeout", "0.2", store=store)
    assert r.code == 1 and "no live follower of m@current confirmed the move" in r.out
    assert "--allow-no-followers" in r.out
    assert run("resolve", "m", store=store).out.strip() == "1.0.1"  # the move itself landed
    r = run("rollback", "m", "--to", "1.0.0", "--wait", "--allow-no-followers", "--json",
            store=store)
    assert r.code == 0 and r.json()["all_followers_on_target"] is True
    assert r.json()["followers"] == []


def test_wait_returns_at_once_when_a_follower_failed_the_target(store: str):
    with _follower(store) as f:
        r = run("promote", "m", "1.0.2", "--wait", "--timeout", "300", "--json", store=store)
        assert r.code == 1
        doc = r.json()
        assert "(failed on f: not waiting longer)" in doc["message"]
        (fol,) = doc["followers"]
        assert fol["state"] == "failed" and "health check failed" in fol["last_error"]
        assert f.model_for().version.version == "1.0.0"
        # an old failure does not end the next wait early: that move is a new one
        r = run("promote", "m", "1.0.1", "--wait", "--timeout", "60", store=store)
        assert r.code == 0 and "1 live follower(s) serving it" in r.out, r.out


def test_wait_advance_and_abort_take_wait(store: str):
    with _follower(store):
        assert run("promote", "m", "1.0.1", "--steps", "10,50,100", "--wait",
                   store=store).code == 0
        r = run("advance", "m", "--wait", "--timeout", "60", "--json", store=store)
        assert r.code == 0 and r.json()["all_followers_on_target"], r.out
        assert sorted(r.json()["followers"][0]["versions"]) == ["1.0.0", "1.0.1"]
        r = run("abort", "m", "--wait", "--timeout", "60", "--json", store=store)
        assert r.code == 0 and r.json()["followers"][0]["versions"] == ["1.0.0"], r.out
    r = run("abort", "m", "--wait", "--timeout", "0", store=store)  # not in a split: refused
    assert r.code == 2


def test_status_clears_the_error_once_a_follower_recovers(store: str):
    faulty = FaultInjectingStore(open_store(store), fail_rate=1.0, ops={"get_with_token"})
    faulty.active = False
    f = _follower(Repository(faulty))
    with f:
        faulty.active = True  # the follower's polls fail: its status shows why
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            (ack,) = read_acks(open_store(store), "m", "current")
            if ack.last_error:
                break
            time.sleep(0.02)
        assert "poll failed" in ack.last_error
        r = run("status", "m", store=store)
        assert "poll failed" in r.out
        faulty.active = False  # the store answers again
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            (ack,) = read_acks(open_store(store), "m", "current")
            if not ack.last_error:
                break
            time.sleep(0.02)
        assert ack.last_error == "" and ack.state == "ok"
        r = run("status", "m", "--json", store=store)
        (fol,) = r.json()["followers"]
        assert fol["last_error"] == "" and fol["state"] == "ok"
        assert "poll failed" not in run("status", "m", store=store).out
