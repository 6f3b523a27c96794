"""Small real model files for tests: safetensors written by hand, torch checkpoints if torch."""

from __future__ import annotations

import random
from pathlib import Path

from casstore.cli.demo import write_safetensors


def tensors(n: int = 9, size: int = 64 << 10, seed: int = 0) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {f"layers.{i}.weight": rng.randbytes(size) for i in range(n)}


def finetune(base: dict[str, bytes], fraction: float = 1 / 3, seed: int = 1) -> dict[str, bytes]:
    rng = random.Random(seed)
    out = dict(base)
    names = list(base)
    for name in names[len(names) - int(len(names) * fraction) :]:
        out[name] = rng.randbytes(len(base[name]))
    return out


def save(path: Path, t: dict[str, bytes], metadata: dict[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(path, t, metadata or {})
    return path
