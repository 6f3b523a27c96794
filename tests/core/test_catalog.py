"""The per-model catalog: summaries kept by compare-and-swap, rebuilt from the manifests when
missing, torn or stale; version numbers never reused; log, query and stats served from it."""

from __future__ import annotations

import uuid

import pytest

from casstore import Repository
from casstore.errors import AlreadyExistsError
from casstore.ops.retention import RetentionPolicy
from casstore.repo import model_catalog
from casstore.repo.keys import catalog_head_key, manifest_key, version_key
from casstore.repo.model_catalog import Entry
from casstore.repo.query import Query, parse_order
from casstore.repo.summary import summarize


def put(repo: Repository, model: str = "m", data: bytes = b"w", **options) -> str:
    """Commit one small in-memory file; returns the new semantic version."""
    def read_at(offset: int, n: int) -> bytes:
        return data[offset : offset + n]

    return repo.commit_sources(model, [("w.bin", len(data), read_at)], **options).version.version


@pytest.fixture
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seal every 4 entries into segments of at most 10: a few dozen versions exercise
    sealing, merging and compaction."""
    monkeypatch.setattr(model_catalog, "SEAL_AT", 4)
    monkeypatch.setattr(model_catalog, "SEGMENT_MAX", 10)
    monkeypatch.setattr(model_catalog, "COMPACT_AT", 6)


@pytest.fixture(params=["memory", "local"])
def repo(request, tmp_path):
    """Most catalog tests run on memory and local disk (S3: the defect-7 and replica tests,
    and the concurrency and request-count tests)."""
    if request.param == "memory":
        return Repository(f"memory://catalog-{uuid.uuid4().hex}")
    return Repository(str(tmp_path / "store"))


def in_sync(repo: Repository, model: str = "m") -> bool:
    return repo.catalog.models_catalog.check(model) == []


def test_version_number_is_not_reused_after_gc(store_url: str):
    repo = Repository(store_url)
    """Issue 18 defect 7: the newest version expires, the next commit does not bump from what
    remains (which would create a second, different 1.0.2)."""
    for i in range(3):
        put(repo, data=b"v%d" % i)
    repo.promote("m", "1.0.0")
    _, report = repo.gc(RetentionPolicy(keep_tags=("keep",), keep_reflog_seconds=0),
                        grace_seconds=0)
    assert report is not None and report.versions_expired == 2
    assert [v.version for v in repo.versions("m")] == ["1.0.0"]
    assert put(repo, data=b"new") == "1.0.3"
    with pytest.raises(AlreadyExistsError, match="never reused"):
        put(repo, data=b"x", version="1.0.2")
    assert in_sync(repo) and repo.verify().ok


def test_version_numbers_survive_a_lost_catalog(repo: Repository):
    """The high-water mark is rebuilt from the index and the expired markers."""
    for i in range(3):
        put(repo, data=b"v%d" % i)
    repo.gc(RetentionPolicy(keep_last=1, keep_reflog_seconds=0), grace_seconds=0)
    repo.store.delete(catalog_head_key("m"))
    assert put(Repository(repo.store), data=b"again") == "1.0.3"


def test_push_to_a_replica_cannot_collide(store_url: str, tmp_path):
    src = Repository(store_url)
    dst = Repository(str(tmp_path / "replica"))
    for i in range(3):
        put(src, data=b"v%d" % i)
    src.push(dst, src.versions("m"), refs=["current"])
    src.promote("m", "1.0.0")
    src.gc(RetentionPolicy(keep_tags=("keep",), keep_reflog_seconds=0), grace_seconds=0)
    assert put(src, data=b"after gc") == "1.0.3"  # not a second, different 1.0.1
    src.push(dst, src.versions("m"))
    assert [v.version for v in dst.versions("m")] == ["1.0.0", "1.0.1", "1.0.2", "1.0.3"]
    # a replica never allocates a number the source used, even one it never received
    src.gc(RetentionPolicy(keep_tags=("keep",), keep_reflog_seconds=0), grace_seconds=0)
    assert put(src, data=b"later") == "1.0.4"
    third = Repository(str(tmp_path / "third"))
    src.push(third, [src.get_version("m", "1.0.0")])
    assert put(third, data=b"local") == "1.0.5"
    assert in_sync(dst) and in_sync(third) and dst.verify().ok


def test_catalog_matches_manifests_through_sealing_tags_and_expiry(repo: Repository,
                                                                    small_segments: None):
    for i in range(30):
        put(repo, data=b"v%d" % i, tags=["even"] if i % 2 == 0 else [])
    head = repo.catalog.models_catalog.head("m")
    assert head is not None and head.segs and len(head.tail) <= 4
    for v in ("1.0.1", "1.0.3", "1.0.21"):  # sealed and tail entries: overlay, then compaction
        repo.tag("m", v, "best")
    repo.untag("m", "1.0.0", "even")
    assert repo.get_version("m", "1.0.3").tags == ("best",)
    assert repo.get_version("m", "1.0.0").tags == ()
    repo.gc(RetentionPolicy(keep_last=10, keep_tags=("best",), keep_reflog_seconds=0),
            grace_seconds=0)
    assert in_sync(repo)
    assert [v.version for v in repo.log("m", 3)] == ["1.0.29", "1.0.28", "1.0.27"]
    assert [v.version for v in repo.versions("m")][:4] == ["1.0.0", "1.0.1", "1.0.3", "1.0.20"]
    assert repo.verify().ok


def test_missing_or_torn_catalog_is_rebuilt(repo: Repository, small_segments: None):
    for i in range(12):
        put(repo, data=b"v%d" % i)
    expected = [v.version for v in repo.versions("m")]
    cat = repo.catalog.models_catalog
    # a missing head: readers rebuild in memory, the next writer stores it
    repo.store.delete(catalog_head_key("m"))
    assert [v.version for v in Repository(repo.store).versions("m")] == expected
    # a torn head
    repo.store.put(catalog_head_key("m"), b"\x93garbage")
    assert cat.check("m") != []
    assert [v.version for v in Repository(repo.store).versions("m")] == expected
    assert put(Repository(repo.store), data=b"next") == "1.0.12"
    assert in_sync(repo)
    # a missing segment
    head = cat.head("m")
    assert head is not None and head.segs
    repo.store.delete(cat.segment_key("m", head.segs[0]))
    fresh = Repository(repo.store)
    assert [v.version for v in fresh.versions("m")] == [*expected, "1.0.12"]
    report = fresh.verify()
    assert report.ok and report.catalogs_rebuilt
    assert in_sync(repo)


def test_a_crash_between_publish_and_catalog_update_loses_nothing(
        repo: Repository, monkeypatch: pytest.MonkeyPatch):
    """The reservation stays in the head; readers resolve it from the index entry, the next
    writer folds it in."""
    put(repo, data=b"first")
    cat = repo.catalog.models_catalog
    semver = cat.reserve("m", lambda high: "1.0.1", "crashed@host")
    donor = Repository(f"memory://donor-{id(repo)}")
    put(donor, data=b"crashed")
    m = donor.get_version("m", "latest").manifest.replace(version=semver,
                                                                 name="m_v1.0.1_x")
    from casstore.digest import Digest
    from casstore.repo.manifest import encode

    raw = encode(m)
    d = Digest.of(raw)
    repo.store.put(manifest_key(d), raw)
    donor_chunks = donor.store
    for f in m.files:
        for digest in f.object_digests():
            from casstore.repo.keys import chunk_key

            repo.store.put(chunk_key(digest), donor_chunks.get(chunk_key(digest)))
    repo.store.put(version_key("m", semver), b'{"manifest": "%s"}' % d.hex().encode())
    # killed here: no finalize
    assert [v.version for v in Repository(repo.store).log("m")] == ["1.0.1", "1.0.0"]
    # a writer folds in a reservation once it is PENDING_SETTLE old (its writer is dead)
    monkeypatch.setattr(model_catalog, "PENDING_SETTLE", 0.0)
    assert put(Repository(repo.store), data=b"third") == "1.0.2"
    head = cat.head("m")
    assert head is not None and head.pending == {}
    assert in_sync(repo) and repo.verify().ok
    assert Entry(summarize(m, d), ()).summary.version == "1.0.1"


def test_query_orders_and_limits(repo: Repository):
    for i, acc in enumerate([0.5, 0.9, 0.7, 0.8]):
        put(repo, data=b"v%d" % i, metrics={"acc": acc})
    put(repo, data=b"none")
    best = repo.query("m", Query(order=parse_order("acc"), limit=2))
    assert [v.version for v in best] == ["1.0.1", "1.0.3"]
    worst = repo.query("m", Query(order=parse_order("acc:asc")))
    assert [v.version for v in worst] == ["1.0.0", "1.0.2", "1.0.3", "1.0.1", "1.0.4"]
    assert repo.query(None, Query(limit=0)) == []


def test_stats_counters_follow_commits_and_gc(repo: Repository):
    for i in range(4):
        put(repo, data=bytes([i]) * 300_000)
    counted, exact = repo.stats(), repo.stats(exact=True)
    assert not counted.exact and exact.exact
    for k in ("versions", "logical_bytes", "stored_bytes", "chunks", "models"):
        assert getattr(counted, k) == getattr(exact, k), k
    repo.gc(RetentionPolicy(keep_last=1, keep_reflog_seconds=0), grace_seconds=0)
    counted, exact = repo.stats(), repo.stats(exact=True)
    for k in ("versions", "logical_bytes", "stored_bytes", "chunks"):
        assert getattr(counted, k) == getattr(exact, k), k


def test_models_come_from_the_catalog_heads(repo: Repository):
    put(repo, "a")
    put(repo, "b")
    repo.store.put("models/zz/junk/1", b"")  # not a model: only catalog heads name models
    assert repo.models() == ["a", "b"]
