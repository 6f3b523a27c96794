"""The chunkers: FastCDC over the whole file, fixed-size pieces, and tensor-aware cutting.

Every chunker parses the file's layout first (so hostile files are refused whatever the
chunking), then cuts from a plan of regions (see :mod:`.pieces`).
"""

from __future__ import annotations

from collections.abc import Iterator

from casstore.chunking.base import MAX_WINDOW, Chunker, FileLayout, ReadAt
from casstore.chunking.detect import detect_layout
from casstore.chunking.fastcdc import CDCParams
from casstore.chunking.pieces import CDC, Region, cover, iter_pieces
from casstore.errors import InvalidInputError

MIN_PIECE = 4 << 10
"""Smallest fixed / tensor piece size accepted."""


def _check_piece(label: str, value: int) -> int:
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not MIN_PIECE <= value <= MAX_WINDOW
    ):
        raise InvalidInputError(f"{label}={value!r} is outside [{MIN_PIECE}, {MAX_WINDOW}]")
    return value


class _PlannedChunker(Chunker):
    """Shared machinery: parse, plan, then cut the plan through bounded windows."""

    def __init__(self, cdc: CDCParams, window: int, largest: int):
        cdc.validate()
        if not isinstance(window, int) or not max(largest, cdc.max) <= window <= MAX_WINDOW:
            raise InvalidInputError(f"read window {window!r} must be in [{largest}, {MAX_WINDOW}]")
        self.cdc = cdc
        self.window = window
        self._cutter = cdc.cutter()  # immutable configuration: safe to share across threads

    def split(
        self,
        read_at: ReadAt,
        size: int,
        filename: str = "",
        *,
        view_at: ReadAt | None = None,
        layout: FileLayout | None = None,
    ) -> tuple[FileLayout, Iterator[memoryview]]:
        if layout is None:
            layout = detect_layout(read_at, size, filename)
        plan = self.plan(layout, size)
        return layout, iter_pieces(view_at or read_at, plan, self._cutter, self.window, filename)

    def plan(self, layout: FileLayout, size: int) -> list[Region]:
        raise NotImplementedError


class FastCDCChunker(_PlannedChunker):
    """FastCDC over the whole file; cuts equal those of one pass over the whole file."""

    def __init__(self, cdc: CDCParams, *, window: int = MAX_WINDOW):
        super().__init__(cdc, window, cdc.max)
        self.name = cdc.name

    def plan(self, layout: FileLayout, size: int) -> list[Region]:
        return [Region(0, size, CDC)] if size else []


class FixedChunker(_PlannedChunker):
    """Pieces of exactly ``size`` bytes (the last one shorter): for benchmarks and sweeps."""

    def __init__(self, size: int, *, window: int = MAX_WINDOW):
        self.size = _check_piece("fixed size", size)
        super().__init__(CDCParams(), window, size)
        self.name = f"fixed/size={size}"

    def plan(self, layout: FileLayout, size: int) -> list[Region]:
        return [Region(0, size, self.size)] if size else []


class TensorChunker(_PlannedChunker):
    """Cut at every tensor payload boundary; split payloads every ``max_chunk`` bytes from the
    tensor's start; FastCDC for everything else (headers, pickles, zip records, gaps).

    The same tensor bytes give the same pieces in any file and any format.
    """

    def __init__(self, max_chunk: int, cdc: CDCParams, *, window: int = MAX_WINDOW):
        self.max_chunk = _check_piece("tensor max", max_chunk)
        super().__init__(cdc, window, max_chunk)
        self.name = f"tensor/max={max_chunk};{cdc.name}"

    def plan(self, layout: FileLayout, size: int) -> list[Region]:
        payloads = ((t.offset, t.offset + t.length) for t in layout.tensors)
        return cover(size, payloads, self.max_chunk)
