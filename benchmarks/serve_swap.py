"""Follower swap time against a full reload, for versions differing in a third of the tensors.

    python -m benchmarks.serve_swap --size-mb 512
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def run(size_mb: int = 512, workdir: Path | None = None) -> dict:
    import torch

    import casstore.torch as ct
    from casstore import Repository
    from casstore.serving import Follower
    from casstore.store import CountingStore, open_store

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
        counting = CountingStore(open_store(store))
        f = Follower(Repository(counting), "m", interval=3600)
        t0 = time.perf_counter()
        f.poll()
        full_s = time.perf_counter() - t0
        full_bytes = counting.bytes_read
        counting.reset()
        Repository(store).promote("m", "1.0.1")
        t0 = time.perf_counter()
        f.poll()
        swap_s = time.perf_counter() - t0
        swap_bytes = counting.bytes_read
        assert f.model_for().version.version == "1.0.1"
        return {"model_bytes": n * numel * 4, "changed_fraction": round((n // 3) / n, 3),
                "full_load_s": round(full_s, 4), "full_load_bytes_read": full_bytes,
                "swap_s": round(swap_s, 4), "swap_bytes_read": swap_bytes,
                "swap_vs_full_time": round(swap_s / full_s, 3),
                "swap_vs_full_bytes": round(swap_bytes / full_bytes, 3)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size-mb", type=int, default=512)
    a = ap.parse_args()
    print(json.dumps(run(a.size_mb), indent=2))
