"""A realistic checkpoint series made with torch: what a team training one model produces.

    base.safetensors              transformer-shaped base model (fp32)
    finetune.safetensors          last third of the layers fine-tuned
    finetune2.safetensors         continued fine-tune of the same layers
    finetune.pt                   the fine-tune re-saved with torch.save
    finetune_meta.safetensors     the fine-tune with extra safetensors metadata (longer header)
    adapter.safetensors           a small LoRA-style adapter
    full_finetune.safetensors     every tensor moved a little
    bf16.safetensors              the fine-tune cast to bf16

The base model's tensor payload is exactly ``size_mb`` MiB (a final ``lm_head.weight`` takes the
remainder), so file sizes are predictable. Perturbations add slices of one shared noise buffer
in place, which keeps generation at memory speed (a 512 MiB base takes seconds, not minutes).

``unique_tensor_bytes`` is the ideal a deduplicating store can reach: the bytes of the distinct
tensor payloads across the whole series.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

SERIES_CORE = ["base", "finetune", "finetune.pt", "finetune_meta", "adapter"]
SERIES_FULL = SERIES_CORE[:2] + ["finetune2"] + SERIES_CORE[2:] + ["full_finetune", "bf16"]
LAYERS = 12


def file_name(name: str) -> str:
    """The file a series entry is written to."""
    return name if name.endswith(".pt") else f"{name}.safetensors"


def _state_dict(size_mb: float, layers: int = LAYERS, seed: int = 0) -> dict:
    """fp32 transformer-shaped weights whose payload is exactly ``size_mb`` MiB (4-byte units)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    total = max(4 * 1024, int(size_mb * (1 << 20)) // 4 * 4) // 4  # floats in all
    # per layer: q, k, v, o (d*d each), up, down (4*d*d each), norm (d) = 12 d^2 + d
    d = max(16, int(math.sqrt(total * 0.95 / (12 * layers))) // 16 * 16)
    vocab = 512
    while vocab * d + layers * (12 * d * d + d) > total and d > 16:
        d -= 16
    shapes: dict[str, tuple[int, ...]] = {"embed.weight": (vocab, d)}
    for i in range(layers):
        p = f"layers.{i}."
        for name in ("q", "k", "v", "o"):
            shapes[p + f"attn.{name}.weight"] = (d, d)
        shapes[p + "mlp.up.weight"] = (4 * d, d)
        shapes[p + "mlp.down.weight"] = (d, 4 * d)
        shapes[p + "norm.weight"] = (d,)
    used = sum(math.prod(s) for s in shapes.values())
    if total - used > 0:
        shapes["lm_head.weight"] = (total - used,)
    sd = {}
    for k, shape in shapes.items():
        if k.endswith("norm.weight"):
            sd[k] = torch.ones(shape)  # identical in every layer: dedup inside one file
        else:
            sd[k] = torch.randn(shape, generator=g).mul_(0.02)
    return sd


class _Noise:
    """Slices of one random buffer, added in place: cheap "every value moves a little"."""

    def __init__(self, numel: int, seed: int) -> None:
        import torch

        self.buf = torch.randn(numel, generator=torch.Generator().manual_seed(seed))
        self.pos = 0

    def perturb(self, v, scale: float):
        n = v.numel()
        start = self.pos % max(1, self.buf.numel() - n + 1)
        self.pos += 7919  # shift the slice so tensors do not get identical noise
        return v.clone().add_(self.buf[start : start + n].view(v.shape), alpha=scale)


def make_series(out: Path, size_mb: float = 64, names: list[str] | None = None) -> dict:
    """Write the series under ``out``; returns {"files", "unique_tensor_bytes", ...}."""
    import torch
    from safetensors.torch import save_file

    names = names or SERIES_FULL
    out.mkdir(parents=True, exist_ok=True)
    base = _state_dict(size_mb)
    noise = _Noise(max(v.numel() for v in base.values()) + 8192, seed=1)
    layer_ids = sorted({int(k.split(".")[1]) for k in base if k.startswith("layers.")})
    tuned_layers = set(layer_ids[-len(layer_ids) // 3 :])

    def tune(sd: dict, scale: float) -> dict:
        return {
            k: (
                noise.perturb(v, scale)
                if k.startswith("layers.") and int(k.split(".")[1]) in tuned_layers
                else v
            )
            for k, v in sd.items()
        }

    cache: dict[str, dict] = {}

    def ft() -> dict:
        if "ft" not in cache:
            cache["ft"] = tune(base, 1e-3)
        return cache["ft"]

    g = torch.Generator().manual_seed(2)
    plans = {
        "base": lambda p: save_file(base, p),
        "finetune": lambda p: save_file(ft(), p),
        "finetune2": lambda p: save_file(tune(ft(), 1e-4), p),
        "finetune.pt": lambda p: torch.save(ft(), p),
        "finetune_meta": lambda p: save_file(
            ft(), p, metadata={"note": "x" * 4096, "run": "sweep-17"}
        ),
        "adapter": lambda p: save_file(
            {f"lora.{i}.{ab}": torch.randn(8, 256, generator=g) for i in range(8) for ab in "AB"}, p
        ),
        "full_finetune": lambda p: save_file(
            {k: noise.perturb(v, 1e-5) for k, v in ft().items()}, p
        ),
        "bf16": lambda p: save_file({k: v.to(torch.bfloat16) for k, v in ft().items()}, p),
    }
    files: dict[str, Path] = {}
    for name in names:
        path = out / file_name(name)
        plans[name](str(path))
        files[name] = path
    return {
        "files": {k: str(v) for k, v in files.items()},
        "base_tensor_bytes": sum(v.numel() * v.element_size() for v in base.values()),
        "unique_tensor_bytes": unique_tensor_bytes(files.values()),
        "logical_bytes": sum(p.stat().st_size for p in files.values()),
    }


def unique_tensor_bytes(paths) -> int:
    """Sum of the sizes of the distinct tensor payloads in the given checkpoint files."""
    import blake3

    from casstore.chunking import detect_layout
    from casstore.repo.inputs import FileSource

    seen: dict[bytes, int] = {}
    for p in paths:
        with FileSource(Path(p)) as src:
            layout = detect_layout(src.read_at, src.size, str(p))
            for t in layout.tensors:
                h = blake3.blake3()
                for off in range(0, t.length, 16 << 20):  # bounded reads
                    h.update(src.read_at(t.offset + off, min(16 << 20, t.length - off)))
                seen[h.digest()] = t.length
    return sum(seen.values())


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out", type=Path)
    ap.add_argument("--size-mb", type=float, default=64)
    ap.add_argument("--core", action="store_true", help="only the five core files")
    a = ap.parse_args()
    print(json.dumps(make_series(a.out, a.size_mb, SERIES_CORE if a.core else None), indent=2))
