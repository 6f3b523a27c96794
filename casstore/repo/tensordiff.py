"""How much each changed tensor changed between two versions (``diff --tensors``).

A tensor is changed when the chunks covering its payload, its dtype or its shape differ (a
manifest-only test). For each changed tensor this reports the dtype and shape on both sides
and, when both are the same numeric safetensors dtype and shape, the largest absolute
difference and the relative L2 change ``||b - a|| / ||a||``. Only changed tensors are read,
each only over its own byte range, in blocks (memory stays bounded for any tensor size), and
every chunk is verified as it is read.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from casstore.chunking.base import SAFETENSORS
from casstore.repo.chunks import ChunkReader
from casstore.repo.files import VersionFile
from casstore.repo.manifest import FileEntry, Manifest, TensorEntry

_NUMPY = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
          "I16": "<i2", "I8": "i1", "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8"}
_BLOCK = 4 << 20  # bytes per read


@dataclass
class TensorChange:
    """One changed tensor: where it is on both sides and how much it changed."""

    name: str
    file_a: str
    file_b: str
    dtype_a: str
    dtype_b: str
    shape_a: list[int]
    shape_b: list[int]
    max_abs_diff: float | None = None
    rel_l2: float | None = None  # ||b - a|| / ||a||; inf when a is all zeros and b is not
    note: str = ""  # why no numbers (dtype or shape changed, format, ...)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_float(raw: bytes, dtype: str) -> np.ndarray:
    arr = np.frombuffer(raw, dtype=_NUMPY[dtype])
    if dtype == "BF16":  # the top half of a float32
        return (arr.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return arr.astype(np.float64)


def _numbers(fa: VersionFile, ta: TensorEntry, fb: VersionFile, tb: TensorEntry) -> tuple[
    float, float
]:
    """(max |b - a|, ||b - a|| / ||a||), reading both payloads block by block."""
    width = np.dtype(_NUMPY[ta.dtype]).itemsize
    step = max(width, _BLOCK // width * width)
    peak, diff_sq, base_sq = 0.0, 0.0, 0.0
    with np.errstate(all="ignore"):  # NaN/Inf in the weights propagate, no warnings
        for pos in range(0, ta.length, step):
            peak, diff_sq, base_sq = _block(fa, ta, fb, tb, pos, min(step, ta.length - pos),
                                            peak, diff_sq, base_sq)
    if base_sq == 0.0:
        return peak, 0.0 if diff_sq == 0.0 else math.inf
    return peak, math.sqrt(diff_sq / base_sq)


def _block(fa: VersionFile, ta: TensorEntry, fb: VersionFile, tb: TensorEntry, pos: int, n: int,
           peak: float, diff_sq: float, base_sq: float) -> tuple[float, float, float]:
    """Fold the ``n`` bytes at ``pos`` of both tensors into the running figures."""
    a, b = bytearray(n), bytearray(n)
    fa.pread_into(memoryview(a), ta.offset + pos)
    fb.pread_into(memoryview(b), tb.offset + pos)
    xa, xb = _as_float(bytes(a), ta.dtype), _as_float(bytes(b), tb.dtype)
    d = xb - xa
    if d.size:
        peak = max(peak, float(np.max(np.abs(d))))
    return peak, diff_sq + float(np.dot(d, d)), base_sq + float(np.dot(xa, xa))


def tensor_changes(
    reader: ChunkReader,
    a: Manifest,
    b: Manifest,
    pairs: list[tuple[FileEntry, FileEntry, list[str]]],
) -> list[TensorChange]:
    """The numbers for every changed tensor named in ``pairs`` (file of a, file of b, names:
    ``Comparison.pairs``)."""
    out = []
    for ea, eb, names in pairs:
        if not names:
            continue
        by_a = {t.name: t for t in ea.tensors}
        by_b = {t.name: t for t in eb.tensors}
        fa, fb = VersionFile(reader, a, ea), VersionFile(reader, b, eb)
        for name in names:
            ta, tb = by_a[name], by_b[name]
            c = TensorChange(name, ea.path, eb.path, ta.dtype, tb.dtype, list(ta.shape),
                             list(tb.shape))
            if (ta.dtype, ta.shape) != (tb.dtype, tb.shape):
                c.note = "dtype or shape changed"
            elif SAFETENSORS not in (ea.format, eb.format) or ea.format != eb.format:
                c.note = f"values not compared in {ea.format} files"
            elif ta.dtype not in _NUMPY or ta.length != tb.length:
                c.note = f"values not compared for dtype {ta.dtype}"
            else:
                c.max_abs_diff, c.rel_l2 = _numbers(fa, ta, fb, tb)
            out.append(c)
    return out
