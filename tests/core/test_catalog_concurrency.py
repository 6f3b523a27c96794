"""Committers racing for version numbers, and SIGKILL during catalog updates (issue 12's
done-when tests): distinct versions, a catalog equal to what the manifests say, nothing lost."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest

from casstore import Repository
from casstore.repo import model_catalog
from casstore.testing.children import CONTEXT, child

pytestmark = pytest.mark.slow


def _committer(url: str, name: str, count: int, barrier, out) -> None:
    try:
        repo = Repository(url)
        repo.store.exists("warm-up")
        barrier.wait(timeout=60)
        got = []
        for i in range(count):
            data = f"{name}-{i}".encode() * 50

            def read_at(offset: int, n: int, data: bytes = data) -> bytes:
                return data[offset : offset + n]

            got.append(repo.commit_sources("m", [("w.bin", len(data), read_at)]).version.version)
        out.put(("ok", got))
    except BaseException as e:  # reported to the parent, which fails the test
        out.put(("error", repr(e)))


@pytest.mark.parametrize("store_kind", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_four_processes_commit_25_versions_each(store_kind: str, tmp_path: Path, request):
    url = str(tmp_path / "store") if store_kind == "local" else request.getfixturevalue("s3_url")
    Repository(url).init()
    barrier, out = CONTEXT.Barrier(4), CONTEXT.Queue()
    procs = [child(_committer, url, f"p{i}", 25, barrier, out) for i in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert all(kind == "ok" for kind, _ in results), results
    allocated = [v for _, got in results for v in got]
    assert len(allocated) == len(set(allocated)) == 100
    repo = Repository(url)
    assert sorted(v.version for v in repo.versions("m")) == sorted(allocated)
    assert {f"1.0.{i}" for i in range(100)} == set(allocated)  # no number skipped either
    assert repo.catalog.models_catalog.check("m") == []
    assert repo.verify().ok


def _commit_forever(url: str, started, die_after: int | None) -> None:
    """Commit (and tag, untag) until killed; with ``die_after``, SIGKILL itself right after
    that many catalog writes (a head CAS or a segment), so the kill lands between the steps
    of a catalog update (reserve / publish / finalize, tag intent / markers / apply)."""
    import os

    model_catalog.SEAL_AT, model_catalog.SEGMENT_MAX, model_catalog.COMPACT_AT = 3, 8, 4
    repo = Repository(url)
    if die_after is not None:
        store, writes = repo.store, [0]
        replace, put_if_absent = store.replace_if_match, store.put_if_absent

        def counted(result):
            writes[0] += 1
            if writes[0] >= die_after:
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        store.replace_if_match = lambda k, d, t: counted(replace(k, d, t)) \
            if k.startswith("catalog/") else replace(k, d, t)
        store.put_if_absent = lambda k, d, **kw: counted(put_if_absent(k, d, **kw)) \
            if k.startswith("catalog/segments/") else put_if_absent(k, d, **kw)
    started.set()
    tagged: list[str] = []
    while True:
        data = b"%r" % random.random() * 40

        def read_at(offset: int, n: int, data: bytes = data) -> bytes:
            return data[offset : offset + n]

        v = repo.commit_sources("m", [("w.bin", len(data), read_at)]).version.version
        if random.random() < 0.4:
            repo.tag("m", v, "t")
            tagged.append(v)
        if len(tagged) > 3:
            repo.untag("m", tagged.pop(0), "t")


def test_sigkill_during_catalog_updates_loses_nothing(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch):
    """24 trials: a committer (small segments, so sealing and merging happen too) is killed
    at a random moment, or kills itself right after a random catalog write; every indexed
    version is still in ``log``, the next commit folds in what the killed one left, and
    verify is clean."""
    monkeypatch.setattr(model_catalog, "PENDING_SETTLE", 0.0)  # the killed writer is gone
    model_catalog_limits = (3, 8, 4)
    url = str(tmp_path / "store")
    Repository(url).commit_sources("m", [("w.bin", 1, lambda offset, n: b"x")])
    rng = random.Random(12)
    hits, seen = 0, set()  # kills that left a reservation or a tag change half done
    for trial in range(24):
        started = CONTEXT.Event()
        die_after = rng.randint(1, 12) if trial % 2 else None  # else killed from outside
        p = child(_commit_forever, url, started, die_after)
        p.start()
        assert started.wait(timeout=60)
        if die_after is None:
            time.sleep(rng.uniform(0.02, 0.35))
            p.kill()
        p.join(timeout=60)
        assert p.exitcode == -signal.SIGKILL
        repo = Repository(url)
        cat = repo.catalog.models_catalog
        head = cat.head("m")
        half_done = set(head.pending) | {f"tag {v}" for v in head.tagging} if head else set()
        hits += bool(half_done - seen)
        seen |= half_done
        indexed = set(cat.listed("m"))
        assert {v.version for v in repo.log("m")} == indexed, f"trial {trial}: lost from log"
        # the next command (a commit) repairs the catalog
        saved = (model_catalog.SEAL_AT, model_catalog.SEGMENT_MAX, model_catalog.COMPACT_AT)
        model_catalog.SEAL_AT, model_catalog.SEGMENT_MAX, model_catalog.COMPACT_AT = \
            model_catalog_limits
        try:
            data = b"after %d" % trial

            def read_at(offset: int, n: int, data: bytes = data) -> bytes:
                return data[offset : offset + n]

            repo.commit_sources("m", [("w.bin", len(data), read_at)])
        finally:
            model_catalog.SEAL_AT, model_catalog.SEGMENT_MAX, model_catalog.COMPACT_AT = saved
        assert cat.check("m") == [], f"trial {trial}"
        head = cat.head("m")
        assert not head.tagging and set(head.pending).isdisjoint(cat.listed("m")), trial
        report = repo.verify()
        assert report.ok and not report.catalogs_rebuilt, (trial, report.problems)
    print(f"{hits} of 24 kills left a catalog update half done")
    assert hits >= 4  # some self-kills land between a reservation and its finalize, etc.
