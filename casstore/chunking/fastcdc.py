"""FastCDC content-defined chunking, streamed through bounded windows.

pyfastcdc's cut of a chunk depends only on the bytes from the chunk's start up to ``max``
bytes later. So a window is cut, every chunk that starts at least ``max`` bytes before the
window's end (or any chunk, in the file's last window) is final, and the next window starts
at the first chunk that is not: the cuts equal those of cutting the whole region at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pyfastcdc

from casstore.chunking.base import MAX_WINDOW, ReadAt, read_exact
from casstore.errors import InvalidInputError

# pyfastcdc's accepted ranges.
_AVG_RANGE = (256, 4 << 20)
_MIN_RANGE = (64, 1 << 20)
_MAX_RANGE = (1024, MAX_WINDOW)


@dataclass(frozen=True)
class CDCParams:
    """FastCDC sizes (normalized chunking level 1, gear seed 0: pyfastcdc's defaults)."""

    avg: int = 64 << 10
    min: int = 16 << 10
    max: int = 256 << 10

    @classmethod
    def of(cls, avg: int, min: int | None = None, max: int | None = None) -> CDCParams:
        """Validated parameters; ``min``/``max`` default to ``avg/4`` and ``avg*4``."""
        params = cls(avg, avg // 4 if min is None else min, avg * 4 if max is None else max)
        params.validate()
        return params

    def validate(self) -> None:
        for label, value, (lo, hi) in (
            ("avg", self.avg, _AVG_RANGE),
            ("min", self.min, _MIN_RANGE),
            ("max", self.max, _MAX_RANGE),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                raise InvalidInputError(f"fastcdc {label}={value!r} is outside [{lo}, {hi}]")
        if not self.min <= self.avg <= self.max:
            raise InvalidInputError(f"fastcdc needs min <= avg <= max, got {self.name}")

    @property
    def name(self) -> str:
        return f"fastcdc/avg={self.avg},min={self.min},max={self.max}"

    def cutter(self) -> pyfastcdc.FastCDC:
        return pyfastcdc.FastCDC(
            self.avg, min_size=self.min, max_size=self.max, normalized_chunking=1
        )


def cut_buffer(cutter: pyfastcdc.FastCDC, view: memoryview) -> Iterator[memoryview]:
    """All chunks of an in-memory region, as views into ``view``."""
    for chunk in cutter.cut_buf(view):
        yield chunk.data


def cut_stream(
    cutter: pyfastcdc.FastCDC,
    read_at: ReadAt,
    start: int,
    end: int,
    window: int = MAX_WINDOW,
    filename: str = "",
) -> Iterator[memoryview]:
    """Chunks of the region ``[start, end)``, read ``window`` bytes at a time.

    Bytes after the last final chunk of a window are read again with the next window (at most
    ``max`` bytes per window), so memory stays at one window and no buffer is reused.
    """
    horizon = cutter.max_size
    if window < horizon:
        raise InvalidInputError(f"window {window} is smaller than the fastcdc max {horizon}")
    pos = start
    while pos < end:
        n = min(window, end - pos)
        view = memoryview(read_exact(read_at, pos, n, filename))
        last = pos + n == end
        consumed = 0
        for chunk in cutter.cut_buf(view):
            if not last and n - chunk.offset < horizon:
                break
            yield chunk.data
            consumed = chunk.offset + chunk.length
        pos += consumed
