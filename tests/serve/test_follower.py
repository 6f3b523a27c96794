"""The serving follower: hot swaps, partial reloads, health checks, acknowledgements."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from casstore import Repository
from casstore.serving import Follower, read_acks
from casstore.store import CountingStore, open_store
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
    assert total / 3 <= read <= total / 3 * 1.1 + (64 << 10), (read, total)
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


@pytest.mark.slow
def test_live_server_follows_rollbacks_without_failed_requests(tmp_path: Path):
    store = str(tmp_path / "s")
    ct.save(weights(1), store, "m")
    ct.save(weights(2, base=weights(1), changed=range(2)), store, "m")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "examples" / "serve_http.py"),
            "--store",
            store,
            "--model",
            "m",
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
        url = f"http://127.0.0.1:{port}/predict?key=k"
        seen: list[str] = []
        failures: list[str] = []
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                try:
                    with urllib.request.urlopen(url, timeout=5) as resp:
                        seen.append(json.loads(resp.read())["version"])
                except Exception as e:
                    failures.append(repr(e))

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for t in threads:
            t.start()
        for cmd, target in (
            (["promote", "m", "1.0.1"], "1.0.1"),
            (["rollback", "m", "--previous-stable"], "1.0.0"),
            (["promote", "m", "1.0.1"], "1.0.1"),
        ):
            r = run(*cmd, "--wait", "--timeout", "30", "--json", store=store)
            assert r.code == 0, r.err + r.out
            assert r.json()["all_followers_on_target"]
            n = len(seen)
            deadline = time.monotonic() + 10
            while len(seen) <= n + 5 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert seen[-1] == target
        stop.set()
        for t in threads:
            t.join()
        assert failures == [] and len(seen) > 50
        changes = [b for a, b in itertools.pairwise(seen) if a != b]
        assert changes[:3] == ["1.0.1", "1.0.0", "1.0.1"]
    finally:
        proc.terminate()
        proc.wait(10)
