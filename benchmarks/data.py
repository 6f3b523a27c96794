"""Cheap benchmark inputs: deterministic random bytes at GB/s and big safetensors files
written in bounded pieces (a 2 GiB file costs a second or two and never sits in memory).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import blake3

PIECE = 16 << 20


def random_bytes(n: int, seed: int | str, offset: int = 0) -> bytes:
    """``n`` pseudo-random bytes (blake3 XOF of ``seed``) starting at ``offset`` of the stream."""
    return blake3.blake3(str(seed).encode()).digest(length=n, seek=offset)


def write_random_safetensors(path: Path, size: int, *, tensors: int = 16, seed: int = 0) -> Path:
    """A valid safetensors file of ``tensors`` F32 vectors, ``size`` payload bytes in all,
    filled with incompressible bytes that differ per ``seed``; written 16 MiB at a time."""
    per = max(4, size // tensors // 4 * 4)
    header, offset = {}, 0
    for i in range(tensors):
        header[f"layers.{i}.weight"] = {
            "dtype": "F32", "shape": [per // 4], "data_offsets": [offset, offset + per]
        }
        offset += per
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for pos in range(0, offset, PIECE):
            f.write(random_bytes(min(PIECE, offset - pos), seed, pos))
    return path
