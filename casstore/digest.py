"""The Digest value type: a blake3 hash of 32 bytes that names chunks and manifests."""

from __future__ import annotations

from typing import Any

import blake3 as _blake3

from casstore.errors import InvalidInputError

DIGEST_SIZE = 32
_HEX = frozenset("0123456789abcdef")


class Digest(bytes):
    """A 32-byte blake3 digest. Immutable, hashable, compares as bytes."""

    __slots__ = ()

    def __new__(cls, raw: bytes | bytearray | memoryview) -> Digest:
        raw = bytes(raw)
        if len(raw) != DIGEST_SIZE:
            raise InvalidInputError(f"a digest has {DIGEST_SIZE} bytes, got {len(raw)}")
        return super().__new__(cls, raw)

    @classmethod
    def of(cls, data: Any) -> Digest:
        """blake3 of a bytes-like object (releases the GIL for large buffers)."""
        return cls(_blake3.blake3(data, max_threads=_threads_for(len(data))).digest())

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse a 64-character lowercase hex digest; anything else is InvalidInputError."""
        if not isinstance(text, str) or len(text) != 2 * DIGEST_SIZE or not set(text) <= _HEX:
            raise InvalidInputError(f"not a blake3 hex digest: {text!r}")
        return cls(bytes.fromhex(text))

    def short(self, n: int = 12) -> str:
        return self.hex()[:n]

    def __repr__(self) -> str:
        return f"Digest({self.short()})"

    def __str__(self) -> str:
        return self.hex()


def _threads_for(size: int) -> int:
    # blake3 multithreading pays off only for large inputs.
    return _blake3.blake3.AUTO if size >= (4 << 20) else 1


def hasher() -> Any:
    """A streaming blake3 hasher (``update`` / ``digest``)."""
    return _blake3.blake3()
