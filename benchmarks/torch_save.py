"""Save throughput of ``casstore.torch.save`` against ``torch.save`` + ``casstore commit`` and
against ``safetensors.torch.save_file`` alone (each charged for making its bytes durable), and
load time of one tensor against the whole model, all in one run. Prints JSON.

    python -m benchmarks.torch_save --size-mb 1024 --tensors 32
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def make_model(size_mb: float, tensors: int, seed: int = 0) -> dict[str, Any]:
    """Random float32 tensors (incompressible, no repeated chunks) of ``size_mb`` in all."""
    import torch

    g = torch.Generator().manual_seed(seed)
    numel = max(1, int(size_mb * 2**20 / 4 / tensors))
    return {f"layers.{i}.weight": torch.randn(numel, generator=g) for i in range(tensors)}


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def save_safetensors(sd: dict[str, Any], path: Path) -> None:
    import safetensors.torch

    safetensors.torch.save_file(sd, str(path))
    fsync_file(path)


def save_torch(sd: dict[str, Any], path: Path) -> None:
    import torch

    torch.save(sd, path)
    fsync_file(path)


def bench_saves(sd: dict[str, Any], work: Path, repeat: int) -> dict[str, Any]:
    import casstore.torch as ct
    from casstore import Repository

    total = sum(t.numel() * t.element_size() for t in sd.values())
    results: dict[str, list[float]] = {"casstore_torch_save": [], "torch_save_then_commit": []}
    results["safetensors_save_file"] = []
    parts: dict[str, list[float]] = {"torch_save": [], "commit": []}
    for r in range(repeat):
        # 1. safetensors.torch.save_file + fsync
        path = work / f"st{r}" / "model.safetensors"
        path.parent.mkdir()
        os.sync()
        s, _ = timed(save_safetensors, sd, path)
        results["safetensors_save_file"].append(s)
        shutil.rmtree(path.parent)

        # 2. torch.save + fsync, then commit the file (what `casstore commit` runs)
        path = work / f"pt{r}" / "model.pt"
        path.parent.mkdir()
        os.sync()
        a, _ = timed(save_torch, sd, path)
        repo = Repository(str(work / f"store-pt{r}"))
        b, _ = timed(repo.commit, "bench", [path])
        parts["torch_save"].append(a)
        parts["commit"].append(b)
        results["torch_save_then_commit"].append(a + b)
        shutil.rmtree(path.parent)
        shutil.rmtree(work / f"store-pt{r}")

        # 3. casstore.torch.save: chunks straight from the tensors (the store fsyncs its writes)
        store = work / f"store-ct{r}"
        os.sync()
        s, _ = timed(ct.save, sd, str(store), "bench")
        results["casstore_torch_save"].append(s)
        if r < repeat - 1:
            shutil.rmtree(store)
    out: dict[str, Any] = {"model_bytes": total}
    for name, secs in results.items():
        best = min(secs)
        out[name] = {"seconds": round(best, 3), "MB_per_s": round(total / best / 1e6, 1)}
    out["torch_save_then_commit"]["parts_seconds"] = {k: round(min(v), 3) for k, v in parts.items()}
    return out


def bench_resave(sd: dict[str, Any], store: Path) -> dict[str, Any]:
    """A second version with one tensor changed: only its chunks are new."""
    import casstore.torch as ct

    name = next(iter(sd))
    changed = dict(sd, **{name: sd[name] + 1})
    s, res = timed(ct.save, changed, str(store), "bench")
    return {
        "seconds": round(s, 3),
        "MB_per_s": round(res.logical_bytes / s / 1e6, 1),
        "new_bytes": res.new_bytes,
    }


def bench_loads(sd: dict[str, Any], store: Path, repeat: int) -> dict[str, Any]:
    import casstore.torch as ct
    from casstore.store import LocalStore
    from casstore.testing.stores import CountingStore

    key = sorted(sd)[len(sd) // 2]
    counting = CountingStore(LocalStore(store))
    one, full = [], []
    for _ in range(max(3, repeat)):
        counting.reset()
        s, got = timed(ct.load, counting, "bench", "1.0.0", keys=[key])
        one.append(s)
        one_bytes = counting.bytes_read
        counting.reset()
        s, got = timed(ct.load, counting, "bench", "1.0.0")
        full.append(s)
        full_bytes = counting.bytes_read
        del got
    total = sum(t.numel() * t.element_size() for t in sd.values())
    tensor = sd[key].numel() * sd[key].element_size()
    return {
        "tensor": key,
        "tensor_bytes": tensor,
        "one_tensor": {
            "seconds_median": round(statistics.median(one), 4),
            "bytes_read": one_bytes,
            "overhead_bytes": one_bytes - tensor,
        },
        "whole_model": {
            "seconds_median": round(statistics.median(full), 4),
            "bytes_read": full_bytes,
            "MB_per_s": round(total / statistics.median(full) / 1e6, 1),
        },
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=float, default=1024)
    ap.add_argument("--tensors", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=1, help="best of N saves")
    ap.add_argument("--workdir", default=None, help="folder for the stores (default: a temp dir)")
    args = ap.parse_args(argv)

    import torch

    work = Path(tempfile.mkdtemp(prefix="casstore-torch-bench-", dir=args.workdir))
    try:
        sd = make_model(args.size_mb, args.tensors)
        report: dict[str, Any] = {
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "tensors": len(sd),
            "save": bench_saves(sd, work, args.repeat),
        }
        store = work / f"store-ct{args.repeat - 1}"
        report["load"] = bench_loads(sd, store, args.repeat)
        report["resave_one_tensor_changed"] = bench_resave(sd, store)
        print(json.dumps(report, indent=2))
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
