"""A realistic checkpoint series made with torch: what a team training one model produces.

    base.safetensors              transformer-shaped base model (fp32)
    finetune.safetensors          last third of the layers fine-tuned
    finetune2.safetensors         continued fine-tune of the same layers
    finetune.pt                   the fine-tune re-saved with torch.save
    finetune_meta.safetensors     the fine-tune with extra safetensors metadata (longer header)
    adapter.safetensors           a small LoRA-style adapter
    full_finetune.safetensors     every tensor moved a little
    bf16.safetensors              the fine-tune cast to bf16

``unique_tensor_bytes`` is the ideal a deduplicating store can reach: the bytes of the distinct
tensor payloads across the whole series.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from pathlib import Path

SERIES_CORE = ["base", "finetune", "finetune.pt", "finetune_meta", "adapter"]
SERIES_FULL = SERIES_CORE[:2] + ["finetune2"] + SERIES_CORE[2:] + ["full_finetune", "bf16"]


def _state_dict(size_mb: float, layers: int = 12, seed: int = 0) -> dict:
    import torch

    g = torch.Generator().manual_seed(seed)
    d = max(16, int(math.sqrt(size_mb * (1 << 20) / 4 / (12 * layers)) // 16 * 16))
    sd = {"embed.weight": torch.randn(256 * 2, d, generator=g)}
    for i in range(layers):
        p = f"layers.{i}."
        for name in ("q", "k", "v", "o"):
            sd[p + f"attn.{name}.weight"] = torch.randn(d, d, generator=g) * 0.02
        sd[p + "mlp.up.weight"] = torch.randn(4 * d, d, generator=g) * 0.02
        sd[p + "mlp.down.weight"] = torch.randn(d, 4 * d, generator=g) * 0.02
        sd[p + "norm.weight"] = torch.ones(d)
    return sd


def make_series(out: Path, size_mb: float = 64, names: list[str] | None = None) -> dict:
    """Write the series under ``out``; returns {"files": {...}, "unique_tensor_bytes": n}."""
    import torch
    from safetensors.torch import save_file

    names = names or SERIES_FULL
    out.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(1)
    base = _state_dict(size_mb)
    layer_ids = sorted({int(k.split(".")[1]) for k in base if k.startswith("layers.")})
    tuned_layers = set(layer_ids[-len(layer_ids) // 3 :])

    def tune(sd: dict, scale: float) -> dict:
        return {
            k: (
                v + torch.randn(v.shape, generator=g) * scale
                if k.startswith("layers.") and int(k.split(".")[1]) in tuned_layers
                else v
            )
            for k, v in sd.items()
        }

    ft = tune(base, 1e-3)
    files: dict[str, Path] = {}
    plans = {
        "base": lambda p: save_file(base, p),
        "finetune": lambda p: save_file(ft, p),
        "finetune2": lambda p: save_file(tune(ft, 1e-4), p),
        "finetune.pt": lambda p: torch.save(ft, p),
        "finetune_meta": lambda p: save_file(
            ft, p, metadata={"note": "x" * 4096, "run": "sweep-17"}
        ),
        "adapter": lambda p: save_file(
            {f"lora.{i}.{ab}": torch.randn(8, 256, generator=g) for i in range(8) for ab in "AB"}, p
        ),
        "full_finetune": lambda p: save_file(
            {k: v + torch.randn(v.shape, generator=g) * 1e-5 for k, v in ft.items()}, p
        ),
        "bf16": lambda p: save_file({k: v.to(torch.bfloat16) for k, v in ft.items()}, p),
    }
    for name in names:
        fname = name if name.endswith(".pt") else f"{name}.safetensors"
        path = out / fname
        plans[name](str(path))
        files[name] = path
    return {
        "files": {k: str(v) for k, v in files.items()},
        "unique_tensor_bytes": unique_tensor_bytes(files.values()),
        "logical_bytes": sum(p.stat().st_size for p in files.values()),
    }


def unique_tensor_bytes(paths) -> int:
    """Sum of the sizes of the distinct tensor payloads in the given checkpoint files."""
    from casstore.chunking import detect_layout
    from casstore.inputs import FileSource

    seen: dict[bytes, int] = {}
    for p in paths:
        with FileSource(Path(p)) as src:
            layout = detect_layout(src.read_at, src.size, str(p))
            for t in layout.tensors:
                h = hashlib.blake2b(src.read_at(t.offset, t.length), digest_size=20).digest()
                seen[h] = t.length
    return sum(seen.values())


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out", type=Path)
    ap.add_argument("--size-mb", type=float, default=64)
    ap.add_argument("--core", action="store_true", help="only the five core files")
    a = ap.parse_args()
    print(json.dumps(make_series(a.out, a.size_mb, SERIES_CORE if a.core else None), indent=2))
