"""Rollback latency against model size on the local store (issue: rollback is O(1) in bytes).

Commits two versions of a 1 MB model and of a large model (default 1 GiB), then times
``rollback --to`` back and forth, each a fresh Repository as a CLI call would be (the verify
of every chunk's presence is included; ``--verify-data`` re-hashing is not).

    python -m benchmarks.rollback --large-mb 1024 --repeats 50
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def _model(path: Path, size: int, seed: int) -> Path:
    """A safetensors file of ``size`` random bytes in 16 tensors."""
    from benchmarks.data import write_random_safetensors

    return write_random_safetensors(path, size, tensors=16, seed=f"rollback-{size}-{seed}")


def measure(store: Path, size: int, repeats: int, tmp: Path) -> dict:
    from casstore import Repository

    model = f"m{size}"
    repo = Repository(str(store))
    for seed in (1, 2):
        repo.commit(model, [_model(tmp / f"{model}-{seed}" / "w.safetensors", size, seed)])
    times = []
    for i in range(repeats):
        target = "1.0.1" if i % 2 == 0 else "1.0.0"
        t0 = time.perf_counter()
        r = Repository(str(store)).rollback(model, to=target, reason="bench")
        times.append(time.perf_counter() - t0)
        assert r.ok
    chunks = len(repo.get_version(model, "1.0.0").manifest.chunk_set())
    return {
        "size_bytes": size,
        "chunks": chunks,
        "p50_ms": statistics.median(times) * 1e3,
        "p90_ms": sorted(times)[int(0.9 * len(times))] * 1e3,
        "repeats": repeats,
    }


def run(large_mb: int = 1024, repeats: int = 50, workdir: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory(dir=workdir) as d:
        tmp = Path(d)
        small = measure(tmp / "store", 1 << 20, repeats, tmp)
        large = measure(tmp / "store", large_mb << 20, repeats, tmp)
    return {
        "small": small,
        "large": large,
        "ratio_p50": round(large["p50_ms"] / small["p50_ms"], 3),
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--large-mb", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=50)
    a = ap.parse_args()
    print(json.dumps(run(a.large_mb, a.repeats), indent=2))
