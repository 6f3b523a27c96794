"""issue 15 item 8: ``stats`` counts the same chunks for the store and per model, after commits,
GC with retention, ``rm`` and a GC killed mid-sweep: the store line, the model rows and
``stats MODEL`` agree with each other and with ``--exact``, or say what is approximate."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from casstore import LeaseSettings, Repository
from casstore.ops.gc import GarbageCollector
from casstore.ops.retention import RetentionPolicy
from casstore.store import open_store
from casstore.store.wrappers import WrappingStore
from casstore.testing.children import child
from tests import series
from tests.cli_helpers import run

STORE_FIGURES = ("models", "versions", "logical_bytes", "chunks", "stored_bytes", "used_chunks",
                 "unreferenced_chunks", "unreferenced_bytes", "unique_bytes", "encoded_bytes",
                 "saved_by_dedup", "saved_by_encoding")
GC = ("gc", "--keep-last", "1", "--keep-reflog", "0", "--grace", "0")


def stats(store: Path | str, *args: str) -> dict[str, Any]:
    r = run("stats", *args, "--json", store=store)
    assert r.code == 0, r.err
    return r.json()


def assert_agree(store: Path | str) -> dict[str, Any]:
    """The three counted views agree with each other and with --exact, and claim exactness."""
    counted, exact = stats(store), stats(store, "--exact")
    rows = counted["per_model"]
    for m, row in rows.items():
        one, one_exact = stats(store, m), stats(store, m, "--exact")
        assert one["per_model"][m] == row == exact["per_model"][m] == one_exact["per_model"][m], m
        assert (one["chunks"], one["stored_bytes"], one["unique_bytes"]) == \
            (row["chunks"], row["stored_bytes"], row["unique_bytes"]), m
        assert {k: one[k] for k in STORE_FIGURES} == {k: one_exact[k] for k in STORE_FIGURES}
    assert {k: counted[k] for k in STORE_FIGURES} == {k: exact[k] for k in STORE_FIGURES}
    assert counted["approximate"] == []
    # a chunk two models share counts once in the store line and in each model's row
    assert max(r["chunks"] for r in rows.values()) <= counted["used_chunks"] <= \
        sum(r["chunks"] for r in rows.values())
    assert counted["used_chunks"] + counted["unreferenced_chunks"] == counted["chunks"]
    return counted


def test_stats_after_the_demo_agree_with_each_other_and_with_exact(tmp_path: Path):
    store = tmp_path / "store"
    assert run("demo", "--size-mb", "8", store=store).code == 0
    counted = assert_agree(store)
    assert counted["used_chunks"] == counted["chunks"]  # the demo's gc reclaimed the rest
    text, one = run("stats", store=store).out, run("stats", "demo-llm", store=store).out
    row = [line for line in text.splitlines() if line.startswith("demo-llm")]
    assert row and row == [line for line in one.splitlines() if line.startswith("demo-llm")]
    assert f"chunks {counted['chunks']} in the store" in text
    assert "approximate" not in text


def _commit(repo: Repository, model: str, t: dict[str, bytes], path: Path, **kw: Any) -> str:
    return repo.commit(model, [series.save(path, t)], **kw).version.version


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def where(request, tmp_path: Path) -> str:
    """A store URL: a local folder, or a prefix in moto's S3 over HTTP."""
    if request.param == "s3":
        return request.getfixturevalue("s3_url")
    return str(tmp_path / "store")


def test_two_models_sharing_chunks_through_gc_and_rm(tmp_path: Path, where: str):
    store = where
    repo = Repository(store)
    base = series.tensors(n=6, size=32 << 10, seed=0)
    _commit(repo, "a", base, tmp_path / "a1.safetensors", ref="current")
    _commit(repo, "a", series.finetune(base, 1 / 3, seed=1), tmp_path / "a2.safetensors")
    # b starts from a's base: its first commit finds most chunks already stored (a's)
    _commit(repo, "b", series.finetune(base, 1 / 6, seed=2), tmp_path / "b1.safetensors",
            ref="current")
    counted, exact = stats(store), stats(store, "--exact")
    assert counted["per_model"] == exact["per_model"]
    assert {k: counted[k] for k in STORE_FIGURES} == {k: exact[k] for k in STORE_FIGURES}
    found = [c for c in counted["approximate"] if c["kind"] == "found"]
    assert len(found) == 1 and found[0]["models"] == ["b"] and found[0]["chunks"] == 5
    assert "5 chunks" in run("stats", store=store).out  # said, with its bound
    assert exact["used_chunks"] < sum(r["chunks"] for r in exact["per_model"].values())

    assert run("stats", "--exact", "--recount", store=store).code == 2
    assert stats(store, "--recount")["approximate"] == []  # counted exactly again
    assert run(*GC, store=store).code == 0  # a keeps current (a1) and its newest (a2)
    assert_agree(store)
    a3 = _commit(repo, "a", series.finetune(base, 1 / 2, seed=3), tmp_path / "a3.safetensors")
    _commit(repo, "b", series.finetune(base, 1 / 6, seed=4), tmp_path / "b2.safetensors")
    assert run("rm", "a", a3, store=store).code == 0  # its chunks stay, unreferenced
    after_rm = assert_agree(store)
    assert after_rm["unreferenced_chunks"] >= 3
    assert run(*GC, store=store).code == 0
    after_gc = assert_agree(store)
    assert after_gc["unreferenced_chunks"] == 0
    assert after_gc["per_model"]["a"]["versions"] == 2  # current + newest (a2)


def test_a_model_row_is_what_pushing_that_model_copies(tmp_path: Path):
    """The per-model definition a user can check: push the model alone into an empty store."""
    store, copy, shared = tmp_path / "store", tmp_path / "copy", tmp_path / "shared"
    repo = Repository(str(store))
    base = series.tensors(n=6, size=32 << 10, seed=0)
    for i in range(2):
        _commit(repo, "a", series.finetune(base, 1 / 3, seed=i), tmp_path / f"a{i}.safetensors")
        _commit(repo, "b", series.finetune(base, 1 / 6, seed=5 + i),
                tmp_path / f"b{i}.safetensors")
    row = stats(store)["per_model"]["b"]
    assert run("push", copy, "b", "--all", store=store).code == 0
    there = assert_agree(copy)  # a transfer counts what it copies, as a commit does
    assert (there["chunks"], there["stored_bytes"], there["unique_bytes"]) == \
        (row["chunks"], row["stored_bytes"], row["unique_bytes"])
    # into a store that holds a already: b's chunks found there are said, with their bound
    assert run("push", shared, "a", "--all", store=store).code == 0
    assert run("push", shared, "b", "--all", store=store).code == 0
    counted, exact = stats(shared), stats(shared, "--exact")
    found = [c for c in counted["approximate"] if c["kind"] == "found"]
    assert len(found) == 1 and found[0]["models"] == ["b"] and found[0]["chunks"] == 4  # a's
    assert {k: counted[k] for k in STORE_FIGURES} == {k: exact[k] for k in STORE_FIGURES}
    assert counted["per_model"]["a"] == exact["per_model"]["a"]
    got, want = counted["per_model"]["b"], exact["per_model"]["b"]
    assert (got["chunks"], got["unique_bytes"]) == (want["chunks"], want["unique_bytes"])
    # the found chunks' stored size was not looked up (taken as their size): within the bound
    assert abs(got["stored_bytes"] - want["stored_bytes"]) <= found[0]["bytes"]
    assert "stored sizes not looked up are taken as their size" in run("stats", store=shared).out


class _DiesMidSweep(WrappingStore):
    """Deletes half of the first batch of chunks GC deletes, then kill -9 of its process."""

    def delete_many(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        chunks = [k for k in keys if k.startswith("chunks/")]
        if chunks:
            self.inner.delete_many(chunks[: len(chunks) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        self.inner.delete_many(keys)


def _gc_killed_mid_sweep(url: str) -> None:
    repo = Repository(_DiesMidSweep(open_store(url)), lease_settings=LeaseSettings(
        lock_timeout=0.5))
    GarbageCollector(repo.ctx, grace_seconds=0).collect(
        RetentionPolicy(keep_last=1, keep_reflog_seconds=0))


def test_gc_killed_mid_sweep_says_so_and_a_rerun_counts_exactly(tmp_path: Path):
    store = tmp_path / "store"
    repo = Repository(str(store))
    base = series.tensors(n=6, size=32 << 10, seed=0)
    for i in range(3):
        _commit(repo, "a", series.finetune(base, 1 / 2, seed=i), tmp_path / f"a{i}.safetensors")
        _commit(repo, "b", series.finetune(base, 1 / 3, seed=10 + i),
                tmp_path / f"b{i}.safetensors")
    p = child(_gc_killed_mid_sweep, str(store))
    p.start()
    p.join(60)
    assert p.exitcode == -signal.SIGKILL
    counted, exact = stats(store), stats(store, "--exact")
    assert counted["chunks"] > exact["chunks"]  # what it deleted is still counted ...
    sweep = [c for c in counted["approximate"] if c["kind"] == "sweep"]
    assert len(sweep) == 1 and sweep[0]["since"] <= time.time()  # ... and stats says so
    assert "approximate: a gc/rm sweep started at" in run("stats", store=store).out
    r = run(*GC, store=store, env={"CASSTORE_LOCK_TIMEOUT": "0.5"})
    assert r.code == 0, r.err
    after = assert_agree(store)
    assert after["versions"] < 6 and after["unreferenced_chunks"] == 0  # the rerun finished


def test_counters_that_cannot_be_trusted_are_named(tmp_path: Path):
    """A head rebuilt since the last count, and a store whose only GC ran under an earlier
    release (catalog/gc, no census): stats names each, and --recount makes it exact."""
    store = tmp_path / "store"
    repo = Repository(str(store))
    base = series.tensors(n=4, size=16 << 10, seed=0)
    _commit(repo, "a", base, tmp_path / "a0.safetensors")
    assert run(*GC, store=store).code == 0  # a census
    _commit(repo, "a", series.finetune(base, 1 / 2, seed=1), tmp_path / "a1.safetensors")
    (store / "catalog" / "heads" / "a").write_bytes(b"garbage")  # rebuilt from the manifests
    kinds = [c["kind"] for c in stats(store)["approximate"]]
    assert kinds == ["rebuilt"]
    assert "the catalog of a was rebuilt" in run("stats", store=store).out
    assert stats(store, "--recount")["approximate"] == []
    assert_agree(store)
    (store / "catalog" / "stats").unlink()
    (store / "catalog" / "gc").write_text('{"chunks": 2, "stored": 100}')
    legacy = [c for c in stats(store)["approximate"] if c["kind"] == "legacy"]
    assert len(legacy) == 1 and legacy[0]["deleted_chunks"] == 2
    assert "a gc by an earlier release deleted 2 chunk objects" in run("stats", store=store).out


def test_repair_recounts_what_it_restores(tmp_path: Path):
    store, replica = tmp_path / "store", tmp_path / "replica"
    repo = Repository(str(store))
    _commit(repo, "a", series.tensors(n=4, size=16 << 10, seed=0), tmp_path / "a.safetensors")
    assert run("push", replica, "a", "--all", store=store).code == 0
    lost = next(p for p in (store / "chunks").rglob("*") if p.is_file())
    lost.unlink()  # damage behind casstore's back, then a count that cannot see the chunk
    assert run(*GC, store=store).code == 0
    assert stats(store)["used_chunks"] == 3
    assert run("repair", "--from", replica, store=store).code == 0
    assert assert_agree(store)["used_chunks"] == 4
