"""Follower swap time against a full reload, for versions differing in a third of the tensors.

    python -m benchmarks.serve_swap --size-mb 512

Both sides load the same target version from the same local store with a warm page cache
(it was just written): "full" is a fresh follower loading it whole, "swap" is a follower that
holds the previous version moving to it (reading only the changed tensors). The two run in
alternating order (whichever runs second finds more in cache); medians are reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def _full_load(store: str) -> tuple[float, int]:
    from casstore import Repository
    from casstore.serving import Follower
    from casstore.store import open_store
    from casstore.testing.stores import CountingStore

    counting = CountingStore(open_store(store))
    t0 = time.perf_counter()
    Follower(Repository(counting), "m", interval=3600).poll()
    return time.perf_counter() - t0, counting.bytes_read


def _swap(follower: Any, counting: Any) -> tuple[float, int]:
    counting.reset()
    t0 = time.perf_counter()
    assert follower.poll()
    return time.perf_counter() - t0, counting.bytes_read


def run(size_mb: int = 512, repeat: int = 4, workdir: Path | None = None) -> dict:
    import torch

    import casstore.torch as ct
    from casstore import Repository
    from casstore.serving import Follower
    from casstore.store import open_store
    from casstore.testing.stores import CountingStore

    with tempfile.TemporaryDirectory(dir=workdir) as d:
        store = str(Path(d) / "s")
        n = 24
        numel = (size_mb << 20) // n // 4
        g = torch.Generator().manual_seed(0)
        v1 = {f"layers.{i}.weight": torch.randn(numel, generator=g) for i in range(n)}
        v2 = dict(v1)
        for i in range(n - n // 3, n):
            v2[f"layers.{i}.weight"] = torch.randn(numel, generator=g)
        ct.save(v1, store, "m")
        ct.save(v2, store, "m")
        repo = Repository(store)
        full_s, swap_s = [], []
        for k in range(repeat):
            repo.promote("m", "1.0.0")
            counting = CountingStore(open_store(store))
            follower = Follower(Repository(counting), "m", interval=3600)
            follower.poll()  # holds 1.0.0
            repo.promote("m", "1.0.1")
            if k % 2:
                (s, swap_bytes), (f, full_bytes) = _swap(follower, counting), _full_load(store)
            else:
                (f, full_bytes), (s, swap_bytes) = _full_load(store), _swap(follower, counting)
            full_s.append(f)
            swap_s.append(s)
            served = follower.model_for()
            assert served.version.version == "1.0.1" and served.reused == n - n // 3
        full, swap = statistics.median(full_s), statistics.median(swap_s)
        return {
            "model_bytes": n * numel * 4,
            "changed_fraction": round((n // 3) / n, 3),
            "full_load_s": round(full, 4),
            "full_load_bytes_read": full_bytes,
            "swap_s": round(swap, 4),
            "swap_bytes_read": swap_bytes,
            "swap_vs_full_time": round(swap / full, 3),
            "swap_vs_full_bytes": round(swap_bytes / full_bytes, 3),
        }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size-mb", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=4, help="runs; the median is reported")
    a = ap.parse_args()
    print(json.dumps(run(a.size_mb, a.repeat), indent=2))
