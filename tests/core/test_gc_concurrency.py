"""GC racing writers, rollbacks and kill -9: nothing referenced is ever lost."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from casstore import LeaseSettings, Repository
from casstore.chunking import make_chunker
from casstore.ops.gc import GarbageCollector
from casstore.ops.retention import RetentionPolicy
from casstore.ops.verify import verify
from casstore.repo.config import StoreConfig
from casstore.testing.children import CONTEXT, child
from tests import series

pytestmark = pytest.mark.slow


def _writer(url: str, seed: int, seconds: float, out) -> None:
    """Commit versions that share most chunks with older ones (re-using existing chunks)."""
    import random as _r
    import tempfile

    repo = Repository(url)
    rng = _r.Random(seed)
    base = series.tensors(n=6, size=16 << 10, seed=0)
    n = 0
    with tempfile.TemporaryDirectory() as tmp:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            t = series.finetune(base, fraction=1 / 6, seed=rng.randrange(4))  # old chunks recur
            f = series.save(Path(tmp) / f"{n}.safetensors", t)
            repo.commit("m", [f])
            n += 1
    out.put(("writer", n))


def _roller(url: str, seconds: float, out) -> None:
    repo = Repository(url)
    n = 0
    rng = random.Random(3)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        versions = [v.version for v in repo.history("m")]
        try:
            repo.rollback("m", to=rng.choice(versions[-3:]))
            n += 1
        except Exception as e:  # an expired target is a clean refusal, never corruption
            if "has no version" not in str(e) and "moved" not in str(e):
                raise
    out.put(("roller", n))


def _collector(url: str, seconds: float, out) -> None:
    repo = Repository(url)
    gc = GarbageCollector(repo.ctx, grace_seconds=0)
    runs = expired = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        _, report = gc.collect(RetentionPolicy(keep_last=2, keep_reflog_seconds=0))
        runs += 1
        expired += report.versions_expired
        time.sleep(0.05)
    out.put(("gc", runs, expired))


@pytest.mark.parametrize("store_kind", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_gc_alongside_writers_and_rollbacks(store_kind: str, tmp_path: Path, request):
    url = str(tmp_path / "store") if store_kind == "local" else request.getfixturevalue("s3_url")
    seconds = 6.0 if store_kind == "local" else 8.0
    repo = Repository(url)
    repo.commit(
        "m", [series.save(tmp_path / "seed.safetensors", series.tensors(n=6, size=16 << 10))]
    )
    q = CONTEXT.Queue()
    procs = [
        child(_writer, url, 1, seconds, q),
        child(_writer, url, 2, seconds, q),
        child(_roller, url, seconds, q),
        child(_collector, url, seconds, q),
    ]
    for p in procs:
        p.start()
    results = [q.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    counts = {r[0]: r for r in results}
    assert counts["gc"][2] > 0, results  # GC really expired versions while others worked
    # and nobody starved: a sweep once waited for a moment with no session at all, which a
    # busy roller (a move session every few ms) rarely left: writers made 1 and 2 commits
    assert all(r[1] >= 3 for r in results if r[0] == "writer"), results
    final = Repository(url)
    report = verify(final.ctx, read_data=True)
    assert report.ok, report.problems[:5]
    for v in final.history("m"):  # every retained version checks out byte-identical
        final.checkout("m", v.version, tmp_path / "out" / v.version)
    final.checkout("m", "@current", tmp_path / "out" / "current")


def test_gc_killed_at_random_moments(tmp_path: Path):
    url = str(tmp_path / "store")
    rng = random.Random(99)
    settings = LeaseSettings(lock_timeout=0.5)  # a dead sweeper's lease goes stale quickly

    def open_repo() -> Repository:
        return Repository(url, lease_settings=settings)

    repo = open_repo()
    repo.init(StoreConfig(chunker=make_chunker("fastcdc", cdc_avg=1024).name))
    for trial in range(12):
        for i in range(3):  # fresh garbage for every trial: many small chunks
            t = series.tensors(n=4, size=48 << 10, seed=trial * 10 + i)
            repo.commit("m", [series.save(tmp_path / f"t{trial}-{i}.safetensors", t)])
        script = (
            "import sys; from casstore import LeaseSettings, Repository\n"
            "from casstore.ops.gc import GarbageCollector\n"
            "from casstore.ops.retention import RetentionPolicy\n"
            "repo = Repository(sys.argv[1], lease_settings=LeaseSettings(lock_timeout=0.5))\n"
            "GarbageCollector(repo.ctx, grace_seconds=0).collect("
            "RetentionPolicy(keep_last=2, keep_reflog_seconds=0))\n"
        )
        p = subprocess.Popen([sys.executable, "-c", script, url])
        time.sleep(rng.uniform(0.2, 1.0))
        p.send_signal(signal.SIGKILL)
        p.wait()
        time.sleep(0.6)  # let the dead sweeper's lease go stale
        after = open_repo()
        for v in after.history("m"):  # every version still listed must read back
            after.checkout("m", v.version, tmp_path / "o" / f"{trial}-{v.version}")
        after.checkout("m", "@current", tmp_path / "o" / f"{trial}-current")
    time.sleep(2.1)  # the final sweep refreshes its lease at a pace a loaded machine keeps
    final = Repository(url, lease_settings=LeaseSettings(lock_timeout=2.0))
    _, _report = GarbageCollector(final.ctx, grace_seconds=0).collect(
        RetentionPolicy(keep_last=2, keep_reflog_seconds=0)
    )
    assert verify(open_repo().ctx, read_data=True).ok
    plan = GarbageCollector(open_repo().ctx, grace_seconds=0).plan(
        RetentionPolicy(keep_last=2, keep_reflog_seconds=0)
    )
    assert plan.chunks == () and plan.manifests == () and plan.expire == ()  # finished
