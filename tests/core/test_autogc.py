"""Automatic cleanup after commits (``policy set --auto-gc``): collects past the threshold,
not below; a failing or concurrent GC never fails a commit; a racing commit loses nothing;
the per-commit cost is a fixed number of small reads."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from casstore import Repository
from casstore.ops.autogc import after_commit
from casstore.ops.gc import GarbageCollector
from casstore.ops.retention import RetentionPolicy, save_policy
from casstore.ops.verify import verify
from casstore.repo.keys import policy_key
from casstore.store import MemoryStore
from casstore.testing.stores import CountingStore, FaultInjectingStore
from tests import series
from tests.cli_helpers import run

SIZE = 32 << 10  # bytes per tensor; every version below has its own 4 tensors


def distinct(tmp_path: Path, i: int) -> Path:
    return series.save(tmp_path / f"v{i}" / "w.safetensors", series.tensors(n=4, size=SIZE,
                                                                           seed=100 + i))


def auto(repo: Repository, model: str | None = "m", **kw) -> None:
    rules = {"keep_last": 1, "keep_reflog_seconds": 0, "auto_gc_grace_seconds": 0,
             "auto_gc_interval_seconds": 0, **kw}
    save_policy(repo.store, model, RetentionPolicy(**rules))


def test_collects_past_the_threshold_not_below(repo: Repository, tmp_path: Path):
    one_version = 4 * SIZE
    auto(repo, auto_gc_bytes=int(2.5 * one_version))  # ~ the chunks of 2.5 versions
    results = [repo.commit("m", [distinct(tmp_path, i)]) for i in range(5)]
    # 1.0.0 is under `current`; keep_last 1 keeps the newest: garbage grows one version a time
    states = [r.auto_gc.state if r.auto_gc else None for r in results]
    assert states == ["below-threshold", "below-threshold", "below-threshold",
                      "below-threshold", "collected"]
    assert results[3].auto_gc.garbage_bytes >= 2 * one_version  # 1.0.1, 1.0.2 below
    assert [v.version for v in repo.history("m")] == ["1.0.0", "1.0.4"]
    done = results[4].auto_gc
    assert done.versions_expired == 3 and done.bytes_freed >= 3 * one_version
    assert "auto-gc: expired 3 versions" in done.describe()
    assert verify(repo.ctx, read_data=True).ok


def test_off_by_default_and_cost_does_not_grow_with_history(tmp_path: Path):
    inner = MemoryStore()
    repo = Repository(inner)
    for i in range(3):
        assert repo.commit("m", [distinct(tmp_path, i)]).auto_gc is None  # no policy: off
    auto(repo, auto_gc_bytes=0, auto_gc_interval_seconds=3600)
    first = repo.commit("m", [distinct(tmp_path, 3)])
    assert first.auto_gc.state == "collected"  # the first check is due; the next hour's not
    costs, i = [], 4
    for n in (3, 9):
        while len(repo.history("m")) < n:
            assert repo.commit("m", [distinct(tmp_path, i)]).auto_gc is None
            i += 1
        counting = CountingStore(inner)
        ctx = Repository(counting).ctx
        counting.reset()  # opening the store read its config
        assert after_commit(ctx, "m") is None  # checked within the hour: not due
        costs.append(counting.requests)
    assert costs == [3, 3]  # two policy objects and gc/auto/m, however long the history


def test_a_failing_or_concurrent_gc_never_fails_the_commit(tmp_path: Path):
    inner = MemoryStore()
    faulty = FaultInjectingStore(inner, fail_rate=1.0, ops={"delete_many"})
    faulty.active = False
    repo = Repository(faulty)
    auto(repo, auto_gc_bytes=0)
    repo.commit("m", [distinct(tmp_path, 0)])
    repo.commit("m", [distinct(tmp_path, 1)])
    faulty.active = True  # the sweep's deletes fail
    res = repo.commit("m", [distinct(tmp_path, 2)])
    assert res.auto_gc.state == "failed" and "TransientBackendError" in res.auto_gc.detail
    faulty.active = False
    assert repo.get_version("m", res.version.version).version == "1.0.2"
    assert verify(repo.ctx, read_data=True).ok  # an interrupted sweep loses nothing
    with repo.leases.sweep():  # another GC is sweeping
        out = after_commit(repo.ctx, "m")
    assert out.state == "skipped" and "another garbage collection" in out.detail
    inner.put(policy_key("m"), b'{"auto_gc_bytes": 0, "auto_gc_interval_seconds": 0}')
    res = repo.commit("m", [distinct(tmp_path, 3)])
    assert res.auto_gc.state == "failed" and "empty retention policy" in res.auto_gc.detail


def test_a_commit_racing_auto_gc_loses_nothing(tmp_path: Path):
    """Model a collects after every commit (grace 0) while model b commits versions that share
    a's chunks: every version of b stays complete."""
    store = str(tmp_path / "store")
    base = series.tensors(n=4, size=SIZE, seed=7)
    files = [series.save(tmp_path / f"f{i}" / "w.safetensors", series.finetune(base, seed=i))
             for i in range(12)]
    Repository(store).commit("a", [files[0]])
    auto(Repository(store), "a", auto_gc_bytes=0)
    errors: list[BaseException] = []

    def commit_all(model: str, order: list[Path]) -> None:
        repo = Repository(store)
        try:
            for f in order:
                repo.commit(model, [f])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    ta = threading.Thread(target=commit_all, args=("a", files[1:]))
    tb = threading.Thread(target=commit_all, args=("b", list(reversed(files))))
    ta.start()
    tb.start()
    ta.join()
    tb.join()
    assert not errors
    repo = Repository(store)
    assert len(repo.history("b")) == len(files)
    assert len(repo.history("a")) == 2  # the newest and `current`
    report = verify(repo.ctx, read_data=True)
    assert report.ok, report.problems
    plan = GarbageCollector(repo.ctx, grace_seconds=0).plan(models=["a"])
    assert not plan.expire  # a's collections kept up


def test_cli_policy_auto_gc_and_commit_output(tmp_path: Path):
    store = tmp_path / "store"
    assert run("commit", "m", distinct(tmp_path, 0), store=store).code == 0
    r = run("policy", "set", "--model", "m", "--keep-last", "1", "--keep-reflog", "0",
            store=store)
    assert r.code == 0
    r = run("policy", "set", "--model", "m", "--auto-gc", "0", "--auto-gc-grace", "0",
            "--auto-gc-interval", "0", "--json", store=store)
    assert r.code == 0, r.err
    policy = r.json()["policy"]
    assert policy["keep_last"] == 1 and policy["auto_gc_bytes"] == 0  # rules kept
    assert run("commit", "m", distinct(tmp_path, 1), store=store).code == 0
    r = run("commit", "m", distinct(tmp_path, 2), store=store)
    assert r.code == 0 and "auto-gc: expired 1 versions" in r.out, r.out
    r = run("commit", "m", distinct(tmp_path, 3), "--json", store=store)
    assert r.json()["auto_gc"]["state"] == "collected"
    r = run("policy", "set", "--model", "m", "--auto-gc", "off", "--json", store=store)
    assert r.json()["policy"]["auto_gc_bytes"] is None
    r = run("commit", "m", distinct(tmp_path, 4), "--json", store=store)
    assert r.json()["auto_gc"] is None
    for bad in ("lots", "-1", "1XB"):
        r = run("policy", "set", "--model", "m", "--auto-gc", bad, store=store)
        assert r.code == 2 and "--auto-gc" in r.err, (bad, r.err)


@pytest.mark.parametrize("size, expected", [("0", 0), ("1.5KiB", 1536), ("2MB", 2_000_000)])
def test_sizes(size: str, expected: int):
    from casstore.cli._common import byte_size

    assert byte_size(size) == expected
