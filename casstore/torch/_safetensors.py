"""A safetensors file that exists only as its header plus a byte callback per tensor.

``read_at(offset, n)`` serves the header from memory and tensor bytes straight from the
tensors (a zero-copy memoryview when a read falls inside one CPU tensor), so a version can be
committed through :meth:`Repository.commit_sources` without writing a temporary file. The bytes
are those ``safetensors.torch.save_file`` writes: tensors ordered by dtype (the library's
order, widest first) then name, compact JSON header padded with spaces to 8 bytes, data
packed without gaps. (``__metadata__`` keys are sorted: the library's order is random.)
"""

from __future__ import annotations

import bisect
import json
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from casstore.errors import InvalidInputError

DTYPE_ORDER = (
    "BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
    "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "C64",
    "F64", "I64", "U64",
)  # fmt: skip
"""The safetensors library's dtype enum order; files list tensors from the last one down."""
_RANK = {name: i for i, name in enumerate(DTYPE_ORDER)}


@dataclass(frozen=True)
class Blob:
    """One tensor to write: its header entry and a callable returning its flat bytes."""

    name: str
    dtype: str  # safetensors dtype name
    shape: tuple[int, ...]
    nbytes: int
    data: Callable[[], memoryview]


class SafetensorsSource:
    """A virtual safetensors file: ``size`` and ``read_at`` for ``commit_sources``."""

    def __init__(self, path: str, blobs: Sequence[Blob], metadata: dict[str, str]) -> None:
        self.path = path
        self.blobs = sorted(blobs, key=lambda b: (-_RANK[b.dtype], b.name))
        header: dict[str, object] = (
            {"__metadata__": dict(sorted(metadata.items()))} if metadata else {}
        )
        pos = 0
        offsets = []
        for b in self.blobs:
            header[b.name] = {
                "dtype": b.dtype,
                "shape": list(b.shape),
                "data_offsets": [pos, pos + b.nbytes],
            }
            offsets.append(pos)
            pos += b.nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        self.header = struct.pack("<Q", len(raw)) + raw
        base = len(self.header)
        self._starts = [base + o for o in offsets]
        self.size = base + pos
        self._cache: tuple[int, memoryview] | None = None

    def _bytes(self, i: int) -> memoryview:
        if self._cache is not None and self._cache[0] == i:
            return self._cache[1]
        b = self.blobs[i]
        view = b.data()
        if len(view) != b.nbytes:
            raise InvalidInputError(
                f"tensor {b.name!r} changed while being saved ({len(view)} != {b.nbytes} bytes)"
            )
        self._cache = (i, view)
        return view

    def read_at(self, offset: int, n: int) -> bytes | memoryview:
        """Exactly ``n`` bytes from ``offset`` (fewer only past the end of the file)."""
        end = min(offset + n, self.size)
        parts: list[bytes | memoryview] = []
        hlen = len(self.header)
        pos = offset
        if pos < hlen:
            parts.append(self.header[pos : min(end, hlen)])
            pos = min(end, hlen)
        i = max(0, bisect.bisect_right(self._starts, pos) - 1)
        while pos < end:
            start = self._starts[i]
            stop = start + self.blobs[i].nbytes
            if start <= pos < stop:
                take = min(end, stop)
                parts.append(self._bytes(i)[pos - start : take - start])
                pos = take
            i += 1
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)
