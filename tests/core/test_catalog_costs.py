"""Request bounds of the everyday commands (issue 12), held with a counting store: they do not
grow with the length of history or the size of the model. On S3 the HTTP requests moto's
server served are counted as well (a listing of many keys is several pages there)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from casstore import Repository
from casstore.ops.gc import GarbageCollector
from casstore.ops.retention import RetentionPolicy
from casstore.repo import model_catalog
from casstore.repo.query import Query, parse_order
from casstore.store import open_store
from casstore.testing.s3 import http_requests
from casstore.testing.stores import CountingStore
from tests import series

N = 60  # versions: with the small segments below, 5+ sealed segments and a short tail


class Meter:
    """Requests of one operation: casstore's store calls, and on S3 the HTTP requests."""

    def __init__(self, store: CountingStore, s3: bool) -> None:
        self.store, self.s3 = store, s3

    def __call__(self, fn, *args, **kw):
        self.store.reset()
        h0 = http_requests()
        out = fn(*args, **kw)
        self.calls = self.store.requests
        self.http = http_requests() - h0 if self.s3 else self.calls
        return out


def put(repo: Repository, i: int, **options) -> str:
    data = b"%d" % i * 20

    def read_at(offset: int, n: int) -> bytes:
        return data[offset : offset + n]

    return repo.commit_sources("m", [("w.bin", len(data), read_at)], **options).version.version


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def history(request, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(model_catalog, "SEAL_AT", 4)
    monkeypatch.setattr(model_catalog, "SEGMENT_MAX", 10)
    url = str(tmp_path / "store") if request.param == "local" else \
        request.getfixturevalue("s3_url")
    store = CountingStore(open_store(url))
    repo = Repository(store)
    for i in range(N):
        put(repo, i, metrics={"acc": (i * 37 % 100) / 100})
    return repo, store, Meter(store, request.param == "s3")


def test_everyday_commands_cost_constant_requests(history):
    repo, store, meter = history
    head = repo.catalog.models_catalog.head("m")
    assert head is not None and len(head.segs) >= 5
    fresh = Repository(store)  # a new process: nothing cached
    meter(put, fresh, N)
    assert meter.calls <= 20 and meter.http <= 20, (meter.calls, meter.http, store.counts())
    fresh = Repository(store)
    v = meter(fresh.get_version, "m", "latest")
    assert v.version == f"1.0.{N}" and meter.calls <= 6 and meter.http <= 6
    fresh = Repository(store)
    got = meter(fresh.log, "m", 20)
    assert [x.version for x in got] == [f"1.0.{N - i}" for i in range(20)]
    assert meter.calls <= 10 and meter.http <= 10, store.counts()
    fresh = Repository(store)
    segments = len(fresh.catalog.models_catalog.head("m").segs)
    best = meter(fresh.query, "m", Query(order=parse_order("acc"), limit=3))
    assert len(best) == 3 and best[0].metrics["acc"] == 0.99
    assert meter.calls <= 5 + segments and meter.http <= 5 + segments, store.counts()
    fresh = Repository(store)
    meter(fresh.models)
    assert meter.calls <= 2 and meter.http <= 2
    fresh = Repository(store)
    st = meter(fresh.stats)
    assert st.versions == N + 1 and meter.calls <= 5 and meter.http <= 5


def test_stats_after_gc_and_rm_costs_constant_requests(history):
    """With a saved census (GC and rm save one) counted stats still read only the format
    marker, the census, the model listing and one head per model; a commit adds none."""
    repo, store, meter = history
    GarbageCollector(repo.ctx, grace_seconds=0).collect(
        RetentionPolicy(keep_last=N // 2, keep_reflog_seconds=0))
    repo.rm("m", repo.history("m")[1].version)  # [0] is what current points at
    fresh = Repository(store)
    meter(put, fresh, N + 1)
    assert meter.calls <= 20 and meter.http <= 20, (meter.calls, meter.http, store.counts())
    fresh = Repository(store)
    st = meter(fresh.stats)
    assert st.approximate == [] and st.versions == repo.stats(exact=True).versions
    assert meter.calls <= 5 and meter.http <= 5, store.reads


def test_rollback_costs_the_same_whatever_the_model_size(tmp_path: Path):
    """A target of 300 chunk objects costs what a target of one does (no check per chunk);
    ``verify=True`` asks about every chunk."""
    store = CountingStore(open_store(str(tmp_path / "store")))
    repo = Repository(store)
    meter = Meter(store, False)
    small = series.save(tmp_path / "s.safetensors", series.tensors(n=1, size=8 << 10))
    big = series.save(tmp_path / "b.safetensors", series.tensors(n=300, size=8 << 10, seed=1))
    repo.commit("m", [small])
    repo.commit("m", [big])
    repo.commit("m", [small], version="2.0.0")
    costs = {}
    for target in ("1.0.0", "2.0.0", "1.0.1", "2.0.0"):
        meter(Repository(store).rollback, "m", to=target)
        costs[target] = meter.calls
    assert costs["1.0.1"] == costs["1.0.0"] <= 20, costs
    meter(Repository(store).rollback, "m", to="1.0.1", verify=True)
    assert meter.calls > 300


def test_gc_plan_reads_no_reflog_entry_outside_its_window(tmp_path: Path):
    store = CountingStore(open_store(str(tmp_path / "store")))
    repo = Repository(store)
    put(repo, 0)
    put(repo, 1)
    for i in range(200):
        repo.promote("m", f"1.0.{i % 2}")
    gc = GarbageCollector(Repository(store).ctx, grace_seconds=0)
    store.reset()
    gc.plan(RetentionPolicy(keep_last=1, keep_reflog_seconds=0))
    assert not [k for k in store.reads.elements() if "/reflog/" in k]
    # reflog --at T reads the entries after T and the one that was in force at T
    first = repo.refs.walk("m", "current", lambda e: e.seq == 100)[-1].time
    store.reset()
    at = Repository(store).refs.at("m", first)
    assert [e.seq for e in at] == [100]
    assert len([k for k in store.reads.elements() if "/reflog/" in k]) <= 100


def test_log_all_of_a_long_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Newest first, every version, reading the head and each segment once."""
    monkeypatch.setattr(model_catalog, "SEAL_AT", 8)
    monkeypatch.setattr(model_catalog, "SEGMENT_MAX", 32)
    store = CountingStore(open_store(str(tmp_path / "store")))
    repo = Repository(store)
    for i in range(100):
        put(repo, i)
    fresh = Repository(store)
    store.reset()
    everything = fresh.log("m")
    assert [v.version for v in everything] == [f"1.0.{99 - i}" for i in range(100)]
    segs = len(fresh.catalog.models_catalog.head("m").segs)
    assert store.requests <= 2 + segs
    assert everything[0].created_at <= dt.datetime.now(dt.timezone.utc)


def test_a_push_publishes_its_versions_together(tmp_path: Path):
    """Pushing N versions: the destination's catalog takes the same few compare-and-swaps
    whatever N (reserve all, finalize all), and neither side answers a lone read per
    version (manifests, index entries and expiry marks are read in batches, whose requests
    are in flight together): a push waits for a handful of round trips, not five per
    version. Pushes of 2 and of 12 versions cost the same lone requests."""
    from casstore.ops.transfer import transfer

    src = CountingStore(open_store(str(tmp_path / "src")))
    local = Repository(src)
    for i in range(12):
        put(local, i, tags=["t"] if i % 2 else [])
    lone = {}
    for n in (2, 12):
        dst = CountingStore(open_store(str(tmp_path / f"dst{n}")))
        Repository(dst).init()
        src.reset()
        dst.reset()
        versions = Repository(src).versions("m")[:n]
        transfer(Repository(src).ctx, Repository(dst).ctx, versions, refs=["current"])
        dst_counts, src_counts = dst.counts(), src.counts()
        lone[n] = (dst_counts["get"].requests, dst_counts["replace_if_match"].requests,
                   src_counts["get"].requests)
        assert [v.version for v in Repository(dst).versions("m")] == [
            v.version for v in versions]
        assert Repository(dst).get_version("m", "1.0.1").tags == ("t",)
    assert lone[2] == lone[12], lone


def test_a_push_reads_the_manifests_of_the_newest_versions_there_only(tmp_path: Path):
    """However long the model's history at the destination, a push reads the manifests of
    its newest versions there (8), not of every version, and asks about the other chunks it
    needs: a new version whose content an old version there already has sends no chunk."""
    import random

    from casstore.ops.transfer import transfer

    def commit(repo: Repository, seed: int) -> None:
        data = random.Random(seed).randbytes(256 << 10)
        repo.commit_sources("m", [("w.bin", len(data), lambda o, n: data[o : o + n])])

    src = Repository(str(tmp_path / "src"))
    for i in range(30):
        commit(src, i)
    dst = CountingStore(open_store(str(tmp_path / "dst")))
    transfer(src.ctx, Repository(dst).ctx, src.versions("m"))
    commit(src, 3)  # the content of 1.0.3, far from the newest versions there
    dst.reset()
    report = transfer(src.ctx, Repository(dst).ctx, [src.versions("m")[-1]])
    manifests = [k for k in dst.reads if k.startswith("manifests/")]
    assert len(manifests) <= 8, len(manifests)
    assert report.chunks_sent == 0 and report.chunks_present > 0
    assert Repository(str(tmp_path / "dst")).get_version("m", "1.0.30").name


def test_a_push_run_again_asks_about_its_versions_together(tmp_path: Path):
    """Pushing versions the destination already has (a CI job re-running ``push --all``):
    their index entries are read in one batch and their tags asked about in one, so a re-run
    over 12 versions makes the same lone GETs as over 2; a tag added at the source since the
    first push is copied."""
    from casstore.ops.transfer import transfer

    src = Repository(str(tmp_path / "src"))
    for i in range(12):
        put(src, i, tags=["t"] if i % 2 else [])
    lone = {}
    for n in (2, 12):
        versions = src.versions("m")[:n]
        transfer(src.ctx, Repository(str(tmp_path / f"dst{n}")).ctx, versions)
        src.tag("m", "1.0.0", f"late{n}")
        dst = CountingStore(open_store(str(tmp_path / f"dst{n}")))
        report = transfer(src.ctx, Repository(dst).ctx, src.versions("m")[:n])
        assert report.chunks_sent == 0 and len(report.versions) == n
        lone[n] = dst.counts()["get"].requests
        assert f"late{n}" in Repository(str(tmp_path / f"dst{n}")).get_version("m", "1.0.0").tags
    assert lone[2] == lone[12], lone


def test_a_catalog_change_after_a_read_swaps_without_reading_again(tmp_path: Path):
    """The catalog's head as this process last read it is what an update swaps against
    first: no second read when nobody wrote since (a push reads the head to learn what the
    destination holds, then reserves its numbers). A head changed by another writer in
    between makes that swap fail and the update read again: both changes stand."""
    store = CountingStore(open_store(str(tmp_path / "s")))
    repo = Repository(store)
    put(repo, 0)
    cat = Repository(store).catalog.models_catalog
    assert cat.read("m") is not None
    store.reset()
    cat.raise_high("m", "1.0.5")
    counts = store.counts()
    assert "get_with_token" not in counts and counts["replace_if_match"].requests == 1
    other = Repository(str(tmp_path / "s")).catalog.models_catalog  # another writer
    cat.read("m")
    other.raise_high("m", "1.0.7")
    cat.change_tags("m", "1.0.0", add=["stable"])
    fresh = Repository(str(tmp_path / "s")).catalog.models_catalog.read("m")
    assert fresh is not None and fresh.high == "1.0.7"
    assert Repository(str(tmp_path / "s")).get_version("m", "1.0.0").tags == ("stable",)


def test_a_push_asks_independent_things_together(tmp_path: Path):
    """A push to a remote store asks what the destination's newest versions hold and which
    of its versions are indexed there at once, and writes the manifests while it asks
    whether any of the numbers were expired there. Each pair meets at a barrier here, which
    requests made one after the other would break."""
    import threading

    from casstore.ops.transfer import transfer
    from casstore.testing.stores import RemoteLookingStore

    local = Repository(str(tmp_path / "src"))
    for i in range(3):
        put(local, i)
    dst = Repository(str(tmp_path / "dst"))
    transfer(local.ctx, dst.ctx, local.versions("m")[:2])
    put(local, 3)
    pairs = {"head": threading.Barrier(2, timeout=20), "manifest": threading.Barrier(2, timeout=20)}
    met: list[str] = []

    class Watched(RemoteLookingStore):
        def get_with_token(self, key):  # type: ignore[no-untyped-def]
            if key.startswith("catalog/heads/") and "head" not in met:
                met.append("head")
                pairs["head"].wait()
            return self.inner.get_with_token(key)

        def exists_many(self, keys):  # type: ignore[no-untyped-def]
            keys = list(keys)
            if any("/versions/" in k for k in keys) and "indexed" not in met:
                met.append("indexed")
                pairs["head"].wait()
            if any("/expired/" in k for k in keys) and "expired" not in met:
                met.append("expired")
                pairs["manifest"].wait()
            return self.inner.exists_many(keys)

        def put_if_absent(self, key, data, *, sync=True):  # type: ignore[no-untyped-def]
            if key.startswith("manifests/") and "manifest" not in met:
                met.append("manifest")
                pairs["manifest"].wait()
            return self.inner.put_if_absent(key, data, sync=sync)

    far = Repository(Watched(open_store(str(tmp_path / "dst"))))
    report = transfer(local.ctx, far.ctx, local.versions("m"), refs=["current"])
    assert sorted(met) == ["expired", "head", "indexed", "manifest"]
    assert [v.version for v in Repository(str(tmp_path / "dst")).versions("m")] == [
        "1.0.0", "1.0.1", "1.0.2", "1.0.3"]
    assert report.versions


def test_a_writer_on_a_remote_store_opens_its_session_while_it_asks_for_the_catalogs(
        tmp_path: Path):
    """Every writer's first question (does the store have catalogs, once per process) goes
    out with its session on a remote store: they meet at a barrier here, which requests
    made one after the other would break. The commit lands as usual."""
    import threading

    from casstore.testing.stores import RemoteLookingStore

    Repository(str(tmp_path / "s")).init()
    barrier = threading.Barrier(2, timeout=20)
    met: list[str] = []

    class Watched(RemoteLookingStore):
        def get(self, key, start=None, end=None):  # type: ignore[no-untyped-def]
            if key == "catalog/format" and "format" not in met:
                met.append("format")
                barrier.wait()
            return self.inner.get(key, start, end)

        def put(self, key, data, *, sync=True):  # type: ignore[no-untyped-def]
            if key.startswith("sessions/") and "session" not in met:
                met.append("session")
                barrier.wait()
            return self.inner.put(key, data, sync=sync)

    repo = Repository(Watched(open_store(str(tmp_path / "s"))))
    assert put(repo, 1) == "1.0.0"
    assert sorted(met) == ["format", "session"]
    assert Repository(str(tmp_path / "s")).get_version("m", "1.0.0").version == "1.0.0"
