"""Ingest a checkpoint series into a fresh local casstore; report throughput and stored bytes.

python -m benchmarks.ingest --size-mb 100        # ~500 MB core series
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.series import SERIES_CORE, make_series


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run(size_mb: float, workdir: Path, names: list[str]) -> dict:
    from casstore import Repository

    series = make_series(workdir / "series", size_mb, names)
    store = workdir / "store"
    repo = Repository(str(store))
    os.sync()
    t0 = time.perf_counter()
    for name, path in series["files"].items():
        repo.commit("series", [path], change_log=name)
    os.sync()  # charge casstore for its own durable writes
    ingest_s = time.perf_counter() - t0
    stats = repo.stats().to_dict()
    t0 = time.perf_counter()
    out = workdir / "restore"
    for v in repo.history("series"):
        repo.checkout("series", v.version, out / v.version)
    os.sync()
    restore_s = time.perf_counter() - t0
    logical = series["logical_bytes"]
    return {
        "files": list(series["files"]),
        "logical_bytes": logical,
        "unique_tensor_bytes": series["unique_tensor_bytes"],
        "stored_bytes": stats["stored_bytes"],
        "store_dir_bytes": du(store),
        "stored_vs_unique": round(stats["stored_bytes"] / series["unique_tensor_bytes"], 4),
        "chunks": stats["chunks"],
        "ingest_seconds": round(ingest_s, 3),
        "ingest_MBps": round(logical / ingest_s / 1e6, 1),
        "restore_seconds": round(restore_s, 3),
        "restore_MBps": round(logical / restore_s / 1e6, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size-mb", type=float, default=100, help="size of the base model")
    ap.add_argument("--workdir", type=Path)
    a = ap.parse_args()
    work = a.workdir or Path(tempfile.mkdtemp(prefix="casstore-bench-"))
    try:
        print(json.dumps(run(a.size_mb, work, SERIES_CORE), indent=2))
    finally:
        if a.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
