"""The chunking vocabulary: the ``read_at`` callable, file layouts, and the Chunker interface.

Chunkers are pure: they read through a caller-given ``read_at(offset, length) -> bytes`` and
never hold more than a bounded window (``MAX_WINDOW``) of the file at once.
"""

from __future__ import annotations

import abc
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from casstore.errors import InvalidInputError

ReadAt = Callable[[int, int], bytes]
"""``read_at(offset, length)`` returns exactly ``length`` bytes of the file or raises."""

MAX_WINDOW = 16 << 20
"""No chunker reads (or yields) more than this many bytes at once."""

"""The default chunker's canonical name (``make_chunker().name``; a test pins the two equal),
spelled out so reading a store's config needs no chunker code."""


@dataclass(frozen=True)
class TensorInfo:
    """One tensor whose payload is a single contiguous byte range of the file."""

    name: str  # state-dict key, dotted for nested dicts in .pt files
    dtype: str  # safetensors dtype name: F32, BF16, F8_E4M3, ...
    shape: tuple[int, ...]
    offset: int  # absolute byte offset of the payload in the file
    length: int  # payload bytes


class TensorCursor:
    """Which tensor's payload wholly holds a piece, for pieces met in file order."""

    def __init__(self, tensors: Iterable[TensorInfo]) -> None:
        self._tensors = sorted(tensors, key=lambda t: (t.offset, -t.length))
        self._i = 0

    def at(self, pos: int, n: int) -> TensorInfo | None:
        ts = self._tensors
        while self._i < len(ts) and ts[self._i].offset + ts[self._i].length <= pos:
            self._i += 1
        t = ts[self._i] if self._i < len(ts) else None
        if t is not None and t.offset <= pos and pos + n <= t.offset + t.length:
            return t
        return None


@dataclass(frozen=True)
class FileLayout:
    """What a file is made of, as far as chunking cares."""

    format: str  # "safetensors" | "torch-zip" | "torch-pickle" | "raw"
    tensors: tuple[TensorInfo, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)


RAW = "raw"
SAFETENSORS = "safetensors"
TORCH_ZIP = "torch-zip"
TORCH_PICKLE = "torch-pickle"


class Chunker(abc.ABC):
    """Splits a file into consecutive pieces. Immutable and safe to share between threads."""

    name: str
    """Canonical parameterised name; ``get_chunker(name)`` re-creates an identical chunker."""

    @abc.abstractmethod
    def split(
        self,
        read_at: ReadAt,
        size: int,
        filename: str = "",
        *,
        view_at: ReadAt | None = None,
        layout: FileLayout | None = None,
    ) -> tuple[FileLayout, Iterator[memoryview]]:
        """Parse the file eagerly (raising InvalidInputError before any piece is yielded) and
        return its layout plus a lazy iterator of pieces covering ``[0, size)`` in order.
        ``layout``: the file's layout as :func:`detect_layout` already parsed it (not again).

        ``view_at`` (optional) serves the bulk reads of piece data and may return any buffer,
        e.g. a memoryview of a memory-mapped window (zero copy); parsing always uses
        ``read_at``, which returns bytes.

        Each piece is a memoryview into a freshly read buffer that is never reused, so pieces
        may be handed to other threads. A piece keeps its whole read window (at most
        ``MAX_WINDOW`` bytes) alive: copy small pieces that must outlive the iteration.
        """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def read_exact(read_at: ReadAt, offset: int, length: int, filename: str = "") -> bytes:
    """``read_at`` with the length checked: a short read means the file changed under us."""
    data = read_at(offset, length)
    if len(data) != length:
        raise InvalidInputError(
            f"{describe(filename)}: read of {length} bytes at offset {offset} returned "
            f"{len(data)} bytes (file changed while reading?)"
        )
    return data


def describe(filename: str) -> str:
    """How error messages name a file."""
    return repr(filename) if filename else "<unnamed file>"


def check_size(size: int, filename: str = "") -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidInputError(f"{describe(filename)}: invalid file size {size!r}")


class SeekableReader(io.RawIOBase):
    """Read-only, seekable raw file plumbing; subclasses give ``size`` and the reads."""

    _pos = 0

    @property
    def size(self) -> int:
        raise NotImplementedError

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos
