"""Small helpers every backend shares: key validation, byte-range rules, content tokens.

Keeping these in one place makes every backend refuse the same keys and answer the same
ranges, which the conformance suite checks.
"""

from __future__ import annotations

from casstore.digest import Digest
from casstore.errors import InvalidInputError
from casstore.store.base import Parts

#: Top-level folders a backend may use for its own bookkeeping (temp files, lock files).
RESERVED_DIRS = ("tmp", "locks")


def check_key(key: object) -> str:
    """Refuse keys that are not a clean relative '/'-separated path.

    Refused: non-strings, empty keys, a leading or trailing '/', empty components ('a//b'),
    '.' and '..' components, backslashes and NUL characters.
    """
    if not isinstance(key, str) or not key:
        raise InvalidInputError(f"invalid object key {key!r}: must be a non-empty string")
    if "\\" in key or "\x00" in key:
        raise InvalidInputError(f"invalid object key {key!r}: backslash or NUL character")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise InvalidInputError(
                f"invalid object key {key!r}: empty, '.' or '..' path component"
            )
    return key


def check_prefix(prefix: object) -> str:
    """A listing prefix: '' (everything) or a key prefix that could start a valid key."""
    if not isinstance(prefix, str):
        raise InvalidInputError(f"invalid listing prefix {prefix!r}: must be a string")
    if prefix == "":
        return prefix
    if prefix.startswith("/") or "\\" in prefix or "\x00" in prefix:
        raise InvalidInputError(f"invalid listing prefix {prefix!r}")
    parts = prefix.split("/")
    if any(p in ("", ".", "..") for p in parts[:-1]) or parts[-1] in (".", ".."):
        raise InvalidInputError(f"invalid listing prefix {prefix!r}")
    return prefix


def shows_reserved(prefix: str, key: str) -> bool:
    """Whether a listing for ``prefix`` should include ``key`` under a reserved folder.

    Reserved folders (``tmp/``, ``locks/``) are listed only when the prefix names them.
    """
    top = key.split("/", 1)[0]
    if top not in RESERVED_DIRS or "/" not in key:
        return True
    return prefix.startswith(top)


def check_range(start: int | None, end: int | None) -> tuple[int, int | None]:
    """Normalise a byte range: start defaults to 0, end to None (the end of the object).

    Negative offsets are refused. ``end`` past the object is clamped by the backend, and
    ``start >= end`` (or ``start`` past the end) reads as ``b""``.
    """
    s = 0 if start is None else start
    if not isinstance(s, int) or s < 0:
        raise InvalidInputError(f"invalid range start {start!r}: must be an int >= 0")
    if end is not None and (not isinstance(end, int) or end < 0):
        raise InvalidInputError(f"invalid range end {end!r}: must be an int >= 0")
    return s, end


def content_token(data: bytes | memoryview) -> str:
    """A CAS token derived from the bytes (same bytes, same token): blake3, already loaded for
    digests, where hashlib would load OpenSSL into every command that reads a ref."""
    return "b3-" + Digest.of(data)[:16].hex()


def as_bytes(data: bytes | bytearray | memoryview | Parts) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, Parts):
        return bytes(data)
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise InvalidInputError(f"object data must be bytes-like, got {type(data).__name__}")
