"""In-process ingest at the machine's limits, each figure next to the limit it is bounded by,
measured in the same run on the same bytes:

* dedup-only (a re-saved checkpoint: every chunk already stored) vs blake3 with two threads
  over the same bytes from memory: what is left once hashing is paid;
* new data into an empty store vs ``dd ... conv=fsync`` of the same bytes: the disk; and the
  same commit into a store with encoding off: what the encoder costs.

    python -m benchmarks.ingest_speed FILE [FILE ...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.disk import SETTLE_S, dd_fsync, settle

DEDUP_TARGET_GBPS = 3.0
NEW_DATA_VS_DD = 0.9


def _blake3_gbps(path: Path) -> float:
    import blake3

    data = path.read_bytes()
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        blake3.blake3(data, max_threads=2).digest()
        best = max(best, len(data) / (time.perf_counter() - t0) / 1e9)
    return best


def run(files: list[Path], workdir: Path | None = None, *, settled: bool = True) -> dict:
    """``settled``: every timed write (the two new-data commits, dd) starts on the same
    disk (:func:`benchmarks.disk.settle`); without it, whichever ran right after a deletion
    wrote into warm blocks (dd here: 1.9 GB/s, against the commit's cold 0.8)."""
    from casstore import Repository
    from casstore.repo.config import StoreConfig

    work = Path(tempfile.mkdtemp(prefix="ingest-speed-", dir=workdir))

    def ready() -> None:
        if settled:
            settle(work)
    rows = {}
    try:
        for path in files:
            size = path.stat().st_size
            path.read_bytes()  # warm the page cache: both sides read from memory
            store = work / "store"
            repo = Repository(str(store))
            ready()
            t0 = time.perf_counter()
            repo.commit("m", [path])  # new data, made durable by the commit
            new_s = time.perf_counter() - t0
            dedup = []
            for _ in range(3):
                t0 = time.perf_counter()
                repo.commit("m", [path])
                dedup.append(size / (time.perf_counter() - t0) / 1e9)
            repo.store.close()
            shutil.rmtree(store)
            off = Repository(str(store))  # the same, storing raw bytes: the encoder's share
            off.init(StoreConfig(encoding="off"))
            ready()
            t0 = time.perf_counter()
            off.commit("m", [path])
            off_s = time.perf_counter() - t0
            off.store.close()
            shutil.rmtree(store)
            dd = dd_fsync(path, work, settled=settled) / 1e9
            b3 = _blake3_gbps(path)
            rows[path.name] = {
                "bytes": size,
                "dedup_GBps": round(max(dedup), 3),
                "blake3_2threads_GBps": round(b3, 3),
                "dedup_vs_blake3": round(max(dedup) / b3, 3),
                "new_data_GBps": round(size / new_s / 1e9, 3),
                "new_data_off_GBps": round(size / off_s / 1e9, 3),
                "dd_fsync_GBps": round(dd, 3),
                "new_data_vs_dd": round(size / new_s / 1e9 / dd, 3),
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"files": rows, "dedup_target_GBps": DEDUP_TARGET_GBPS,
            "new_data_vs_dd_target": NEW_DATA_VS_DD}


def render(d: dict) -> list[str]:
    rows = ["| file | MB | dedup-only GB/s | blake3 x2 GB/s | ratio | new data GB/s | "
            "encoding off GB/s | dd conv=fsync GB/s | ratio |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in d["files"].items():
        rows.append(f"| {name} | {r['bytes'] / 1e6:,.0f} | {r['dedup_GBps']} | "
                    f"{r['blake3_2threads_GBps']} | {r['dedup_vs_blake3']} | "
                    f"{r['new_data_GBps']} | {r.get('new_data_off_GBps', '-')} | "
                    f"{r['dd_fsync_GBps']} | {r['new_data_vs_dd']} |")
    return rows + ["", "In-process `Repository.commit`, page cache warm; dedup-only is the best "
                   "of three re-commits of the same file; blake3 hashes the same bytes from "
                   "memory with two threads; new data is the store's default encoding, "
                   "encoding off the same commit storing raw bytes; dd copies them with "
                   "conv=fsync. Each of these three writes starts on the same disk: the page "
                   "cache written back and, on a file system that discards freed blocks, "
                   f"{SETTLE_S:g} s for them to go cold (`benchmarks/disk.py`)."]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path)
    a = ap.parse_args()
    print(json.dumps(run(a.files), indent=2))
