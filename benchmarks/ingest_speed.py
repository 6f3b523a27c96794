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
import subprocess
import tempfile
import time
from pathlib import Path

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


def _dd_gbps(path: Path, work: Path) -> float:
    out = work / "dd.out"
    t0 = time.perf_counter()
    subprocess.run(["dd", f"if={path}", f"of={out}", "bs=16M", "conv=fsync", "status=none"],
                   check=True)
    seconds = time.perf_counter() - t0
    out.unlink()
    return path.stat().st_size / seconds / 1e9


def run(files: list[Path], workdir: Path | None = None) -> dict:
    from casstore import Repository
    from casstore.repo.config import StoreConfig

    work = Path(tempfile.mkdtemp(prefix="ingest-speed-", dir=workdir))
    rows = {}
    try:
        for path in files:
            size = path.stat().st_size
            path.read_bytes()  # warm the page cache: both sides read from memory
            store = work / "store"
            repo = Repository(str(store))
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
            t0 = time.perf_counter()
            off.commit("m", [path])
            off_s = time.perf_counter() - t0
            off.store.close()
            shutil.rmtree(store)
            dd = _dd_gbps(path, work)
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
                   "conv=fsync."]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path)
    a = ap.parse_args()
    print(json.dumps(run(a.files), indent=2))
