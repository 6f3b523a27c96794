"""The serving follower: hot swaps, partial reloads, health checks, acknowledgements."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from casstore import Repository
from casstore.repo.keys import chunk_key
from casstore.serving import Follower, read_acks, wait_for_followers
from casstore.store import open_store
from casstore.testing.stores import CountingStore, FaultInjectingStore
from tests.cli_helpers import run

torch = pytest.importorskip("torch")

import casstore.torch as ct  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def weights(
    seed: int,
    n: int = 6,
    size: int = 64 << 10,
    changed: range | None = None,
    base: dict | None = None,
) -> dict:
    g = torch.Generator().manual_seed(seed)
    if base is None:
        return {f"layer{i}.weight": torch.randn(size // 4, generator=g) for i in range(n)}
    out = dict(base)
    for i in changed or ():
        out[f"layer{i}.weight"] = torch.randn(size // 4, generator=g)
    return out


def test_swap_reads_only_changed_tensors(tmp_path: Path):
    store = str(tmp_path / "s")
    v1 = weights(1, size=1 << 20)
    v2 = weights(2, size=1 << 20, base=v1, changed=range(4, 6))  # a third of the tensors
    ct.save(v1, store, "m")
    ct.save(v2, store, "m")
    counting = CountingStore(open_store(store))
    f = Follower(Repository(counting), "m", interval=60)
    f.poll()
    assert f.model_for().version.version == "1.0.0"
    full = f.model_for()
    counting.reset()
    Repository(store).promote("m", "1.0.1")
    t0 = time.perf_counter()
    assert f.poll()
    swap_s = time.perf_counter() - t0
    served = f.model_for()
    assert served.version.version == "1.0.1" and served.reused == 4
    for k, t in v2.items():
        assert torch.equal(served.state_dict[k], t)
    total = sum(t.numel() * 4 for t in v2.values())
    read = counting.bytes_read
    plain = open_store(store)
    versions = Repository(plain).versions("m")
    new = versions[1].manifest.chunk_set() - versions[0].manifest.chunk_set()
    stored = sum(plain.stat(chunk_key(d)).size for d in new)  # encoded: below a third
    assert 0 < stored <= total / 3
    assert stored <= read <= stored * 1.1 + (64 << 10), (read, stored, total)
    assert served.state_dict["layer0.weight"] is full.state_dict["layer0.weight"]  # reused
    print(f"swap {swap_s:.4f}s reading {read} bytes; full load {full.seconds:.4f}s")


def test_split_follows_resolve(tmp_path: Path):
    store = str(tmp_path / "s")
    ct.save(weights(1), store, "m")
    ct.save(weights(2), store, "m")
    repo = Repository(store)
    repo.start_split("m", "1.0.1", steps=(0.3, 1.0))
    f = Follower(store, "m", interval=60)
    f.poll()
    assert f.versions == ["1.0.0", "1.0.1"]
    for i in range(200):
        key = f"user-{i}"
        assert f.model_for(key).version.version == repo.resolve("m", "current", key).version


def test_failed_health_check_never_served(tmp_path: Path):
    store = str(tmp_path / "s")
    good = weights(1)
    ct.save(good, store, "m")
    bad = dict(good, **{"layer0.weight": torch.full((16,), float("nan"))})
    ct.save(bad, store, "m")
    f = Follower(
        store,
        "m",
        interval=60,
        follower_id="f1",
        health_check=lambda sd, v: bool(torch.isfinite(sd["layer0.weight"]).all()),
    )
    f.poll()
    Repository(store).promote("m", "1.0.1")
    assert not f.poll()
    assert f.model_for().version.version == "1.0.0"
    (ack,) = read_acks(Repository(store).store, "m", "current")
    assert ack.state == "failed" and "health check failed" in ack.last_error
    assert ack.failed_version == "1.0.1" and ack.versions == ["1.0.0"]
    r = run("status", "m", "--json", store=store)
    assert r.code == 0, r.err
    (fol,) = r.json()["followers"]
    assert fol["on_target"] is False and fol["state"] == "failed"
    r = run("rollback", "m", "--to", "1.0.0", "--wait", "--timeout", "5", store=store)
    assert r.code == 0  # 1.0.0 is what f1 serves
    f.poll()  # the ref moved back to what it serves: no load, the failure clears
    assert f.model_for().version.version == "1.0.0"
    (ack,) = read_acks(Repository(store).store, "m", "current")
    assert ack.state == "ok" and ack.last_error == ""


def test_heartbeat_keeps_a_long_load_live(tmp_path: Path):
    store = str(tmp_path / "s")
    ct.save(weights(1), store, "m")
    ct.save(weights(2), store, "m")
    loading = threading.Event()

    def slow_build(sd: dict, v) -> dict:
        if v.version == "1.0.1":
            loading.set()
            time.sleep(1.5)  # longer than the liveness window of a silent follower
        return sd

    f = Follower(store, "m", build=slow_build, interval=0.05, heartbeat=0.1, follower_id="f")
    f.start()
    try:
        Repository(store).promote("m", "1.0.1")
        assert loading.wait(5)
        time.sleep(0.5)
        (ack,) = read_acks(f.repo.store, "m", "current")
        assert ack.state == "loading" and ack.versions == ["1.0.0"] and ack.age < 0.4
        done, acks = wait_for_followers(f.repo.store, "m", "current", {"1.0.1"}, timeout=10)
        assert done and [a.id for a in acks] == ["f"]  # waited for it: never counted as gone
        assert f.model_for().version.version == "1.0.1"
    finally:
        f.stop()
    assert read_acks(f.repo.store, "m", "current") == []  # a clean stop leaves no ack


def test_transient_load_failure_is_retried(tmp_path: Path):
    store = str(tmp_path / "s")
    ct.save(weights(1), store, "m")
    ct.save(weights(2), store, "m")
    faulty = FaultInjectingStore(open_store(store), fail_rate=1.0, ops={"get", "get_many"})
    faulty.active = False
    f = Follower(Repository(faulty), "m", interval=0.05, follower_id="f")
    f.poll()
    Repository(store).promote("m", "1.0.1")
    faulty.active = True
    assert not f.poll()
    (ack,) = read_acks(Repository(store).store, "m", "current")
    assert ack.state == "failed" and "retrying" in ack.last_error
    assert f.model_for().version.version == "1.0.0"
    faulty.active = False
    assert not f.poll()  # backing off: no load yet
    time.sleep(0.15)
    assert f.poll() and f.model_for().version.version == "1.0.1"
    (ack,) = read_acks(Repository(store).store, "m", "current")
    assert ack.state == "ok" and ack.last_error == ""


@pytest.mark.slow
def test_live_server_follows_rollbacks_without_failed_requests(tmp_path: Path):
    """An HTTP server follows the ref while clients hammer it: every move lands, a version
    failing its health check is never served, and no request fails."""
    store = str(tmp_path / "s")
    v1 = weights(1)
    ct.save(v1, store, "m")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "examples" / "serve_http.py"),
            "--store",
            store,
            "--model",
            "m",
            "--ref",
            "current",  # the example serves production unless told
            "--port",
            "0",
            "--interval",
            "0.1",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = json.loads(proc.stdout.readline())["listening"]
        seen: list[tuple[int, float, str]] = []  # (client, request start, version served)
        failures: list[str] = []
        stop = threading.Event()

        def hammer(i: int) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                url = f"http://127.0.0.1:{port}/predict?key=c{i}-{n}"
                t0 = time.monotonic()
                try:
                    with urllib.request.urlopen(url, timeout=5) as resp:
                        seen.append((i, t0, json.loads(resp.read())["version"]))
                except Exception as e:
                    failures.append(repr(e))

        def settle(target: str) -> None:
            """Every request each client starts from now on is answered by ``target``."""
            since = time.monotonic()
            deadline = since + 10
            while time.monotonic() < deadline:
                if {i for i, t0, _ in list(seen) if t0 > since} == set(range(3)):
                    break
                time.sleep(0.02)
            after = {v for _, t0, v in list(seen) if t0 > since}
            assert after == {target}, (target, after)

        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        ct.save(weights(2, base=v1, changed=range(2)), store, "m")  # committed while serving
        settle("1.0.0")  # a commit alone does not move the ref
        for cmd, target in (
            (["promote", "m", "1.0.1"], "1.0.1"),
            (["rollback", "m", "--previous-stable"], "1.0.0"),
            (["promote", "m", "1.0.1"], "1.0.1"),
        ):
            r = run(*cmd, "--wait", "--timeout", "30", "--json", store=store)
            assert r.code == 0, r.err + r.out
            assert r.json()["all_followers_on_target"] and len(r.json()["followers"]) == 1
            settle(target)

        bad = dict(v1, **{"layer0.weight": torch.full((16,), float("nan"))})
        ct.save(bad, store, "m")  # 1.0.2 fails the server's health check
        r = run("promote", "m", "1.0.2", "--wait", "--timeout", "3", store=store)
        assert r.code == 1 and "NOT landed" in r.out and "health check failed" in r.out, r.out
        settle("1.0.1")
        r = run("status", "m", "--json", store=store)
        (fol,) = r.json()["followers"]
        assert fol["state"] == "failed" and fol["failed_version"] == "1.0.2"
        assert fol["versions"] == ["1.0.1"] and fol["on_target"] is False
        r = run("rollback", "m", "--to", "1.0.1", "--wait", "--timeout", "30", store=store)
        assert r.code == 0 and "1 live follower(s) serving it" in r.out, r.out
        deadline = time.monotonic() + 10  # it already serves 1.0.1: "ok" on its next poll
        while True:
            r = run("status", "m", "--json", store=store)
            (fol,) = r.json()["followers"]
            if fol["state"] == "ok" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert fol["state"] == "ok" and fol["on_target"] is True

        stop.set()
        for t in threads:
            t.join()
        assert failures == [] and len(seen) > 50
        assert "1.0.2" not in {v for _, _, v in seen}
        for i in range(3):  # each client saw exactly the moves, in order, no flapping
            mine = [v for c, _, v in seen if c == i]
            changes = [b for a, b in itertools.pairwise(mine) if a != b]
            assert mine[0] == "1.0.0" and changes == ["1.0.1", "1.0.0", "1.0.1"], changes
    finally:
        proc.terminate()
        proc.wait(10)


def test_example_server_follows_production_unless_told(tmp_path: Path):
    store = str(tmp_path / "s")
    v1 = weights(1)
    ct.save(v1, store, "m")  # current -> 1.0.0
    ct.save(weights(2, base=v1, changed=range(2)), store, "m")
    server = [sys.executable, str(ROOT / "examples" / "serve_http.py"), "--store", store,
              "--model", "m", "--port", "0", "--interval", "0.1"]
    proc = subprocess.Popen(server, stdout=subprocess.PIPE, text=True)
    try:
        port = json.loads(proc.stdout.readline())["listening"]
        url = f"http://127.0.0.1:{port}/predict?key=k"
        with pytest.raises(urllib.error.HTTPError) as e:  # no production ref yet: 503
            urllib.request.urlopen(url, timeout=5)
        assert e.value.code == 503 and "m@production does not exist" in e.value.read().decode()
        assert run("promote", "m", "1.0.1", "--ref", "production", store=store).code == 0
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    assert json.loads(r.read())["version"] == "1.0.1"  # production, not current
                    break
            except urllib.error.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(10)


def test_rollback_wait_across_replicas(tmp_path: Path):
    from casstore.ops.transfer import transfer
    from casstore.serving.acks import FollowerAck, write_ack

    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    ct.save(weights(1), a, "m")
    ct.save(weights(2), a, "m")
    src, replica = Repository(a), Repository(b)
    transfer(src.ctx, replica.ctx, src.versions("m"), refs=["current"])
    for r in (src, replica):
        r.promote("m", "1.0.1")
    with Follower(b, "m", interval=0.05, follower_id="on-b"):
        r = run("rollback", "m", "--to", "1.0.0", "--replica", b, "--wait", "--json", store=a)
        assert r.code == 0, r.err + r.out
        stores = r.json()["stores"]
        assert [s["result"]["all_followers_on_target"] for s in stores] == [True, True]
        assert [f["id"] for f in stores[1]["result"]["followers"]] == ["on-b"]
    # a live follower that never moves: --wait gives up, names it, exits non-zero
    write_ack(replica.store, FollowerAck("stuck", "m", "current", ["9.9.9"], 1, time.time(), 60))
    r = run("promote", "m", "1.0.1", "--replica", b, "--wait", "--timeout", "1", store=a)
    assert r.code == 1 and "NOT landed on: stuck serves 9.9.9" in r.out, r.out
