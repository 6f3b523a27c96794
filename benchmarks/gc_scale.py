"""GC time against the number of chunks in the store (local store).

Commits 10 versions whose random content is cut into fixed 8 KiB chunks (so the chunk count is
what we ask for; chunks up to ``INLINE_MAX`` = 4 KiB would live inside manifests, not as
objects), then collects with keep-last 5: half the chunks are garbage.

    python -m benchmarks.gc_scale --chunks 10000 100000
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

CHUNK = 8192


def run_one(total_chunks: int, workdir: Path) -> dict:
    from casstore import Repository
    from casstore.ops.gc import GarbageCollector
    from casstore.ops.retention import RetentionPolicy
    from casstore.repo.config import StoreConfig

    repo = Repository(str(workdir / "store"))
    repo.init(StoreConfig(chunker=f"fixed/size={CHUNK}"))
    versions = 10
    per = total_chunks // versions
    for _i in range(versions):
        data = os.urandom(per * CHUNK)
        repo.commit_sources("m", [("w.bin", len(data), lambda o, n, d=data: d[o : o + n])])
    repo.promote("m", "1.0.9")
    os.sync()  # GC collects old data: let the page cache write it back first
    gc = GarbageCollector(repo.ctx, grace_seconds=0)
    policy = RetentionPolicy(keep_last=5, keep_reflog_seconds=0)
    t0 = time.perf_counter()
    plan = gc.plan(policy)
    t_plan = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = gc.execute(plan)
    t_exec = time.perf_counter() - t0
    return {
        "chunks": total_chunks,
        "versions_expired": report.versions_expired,
        "chunks_deleted": report.chunks_deleted,
        "plan_s": round(t_plan, 3),
        "execute_s": round(t_exec, 3),
        "total_s": round(t_plan + t_exec, 3),
        "us_per_chunk": round((t_plan + t_exec) / total_chunks * 1e6, 2),
    }


def run(counts: list[int], workdir: Path | None = None) -> list[dict]:
    out = []
    for n in counts:
        with tempfile.TemporaryDirectory(dir=workdir) as d:
            out.append(run_one(n, Path(d)))
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--chunks", type=int, nargs="+", default=[10_000, 100_000])
    a = ap.parse_args()
    print(json.dumps(run(a.chunks), indent=2))
