"""Turn a plan of regions into pieces, reading the file in coalesced windows.

A plan is an ordered list of ``Region`` covering the file. A region is either split at fixed
steps counted from its start (tensor payloads, fixed chunking) or cut with FastCDC restricted
to the region (headers, gaps, whole files). Consecutive small pieces share one read of at most
``window`` bytes; a piece never straddles two reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

import pyfastcdc

from casstore.chunking.base import MAX_WINDOW, ReadAt, read_exact
from casstore.chunking.fastcdc import cut_buffer, cut_stream

CDC = 0
"""``Region.step`` value meaning: cut with FastCDC."""


class Region(NamedTuple):
    start: int
    end: int
    step: int  # > 0: pieces of ``step`` bytes counted from ``start``; CDC (0): FastCDC


def cover(size: int, payloads: Iterable[tuple[int, int]], step: int) -> list[Region]:
    """Regions covering ``[0, size)``: each payload range split by ``step``, FastCDC between.

    ``payloads`` are (start, end) ranges; overlapping ones are merged (tensors sharing
    storage), empty ones dropped.
    """
    plan: list[Region] = []
    pos = 0
    cur_start = cur_end = -1
    for start, end in sorted(p for p in payloads if p[1] > p[0]):
        if start < cur_end:  # overlaps the current payload: merge
            cur_end = max(cur_end, end)
            continue
        if cur_end > 0:
            plan.append(Region(cur_start, cur_end, step))
            pos = cur_end
        if start > pos:
            plan.append(Region(pos, start, CDC))
        cur_start, cur_end = start, end
    if cur_end > 0:
        plan.append(Region(cur_start, cur_end, step))
        pos = cur_end
    if size > pos:
        plan.append(Region(pos, size, CDC))
    return plan


def iter_pieces(
    read_at: ReadAt,
    plan: list[Region],
    cutter: pyfastcdc.FastCDC,
    window: int = MAX_WINDOW,
    filename: str = "",
) -> Iterator[memoryview]:
    """Yield the pieces of ``plan`` in order (a generator: nothing is read until iterated)."""
    batch = _Batch(read_at, cutter, window, filename)
    for start, end, step in plan:
        if step:
            for a in range(start, end, step):
                yield from batch.add(a, min(a + step, end), step)
        elif end - start <= window:
            yield from batch.add(start, end, CDC)
        else:
            yield from batch.flush()
            yield from cut_stream(cutter, read_at, start, end, window, filename)
    yield from batch.flush()


class _Batch:
    """Consecutive spans waiting to be served from a single read."""

    def __init__(self, read_at: ReadAt, cutter: pyfastcdc.FastCDC, window: int, filename: str):
        self.read_at = read_at
        self.cutter = cutter
        self.window = window
        self.filename = filename
        self.spans: list[tuple[int, int, int]] = []

    def add(self, start: int, end: int, step: int) -> Iterator[memoryview]:
        if self.spans and end - self.spans[0][0] > self.window:
            yield from self.flush()
        self.spans.append((start, end, step))

    def flush(self) -> Iterator[memoryview]:
        spans, self.spans = self.spans, []
        if not spans:
            return
        base = spans[0][0]
        view = memoryview(read_exact(self.read_at, base, spans[-1][1] - base, self.filename))
        for start, end, step in spans:
            if step:
                yield view[start - base : end - base]
            else:
                yield from cut_buffer(self.cutter, view[start - base : end - base])
