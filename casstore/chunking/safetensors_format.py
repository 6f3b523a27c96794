"""Parse and strictly validate a safetensors header, by hand (no safetensors, no torch).

Format: an 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the data; each
JSON entry gives a tensor's dtype, shape and ``data_offsets`` relative to the data start.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

from casstore.chunking.base import (
    MAX_WINDOW,
    SAFETENSORS,
    FileLayout,
    ReadAt,
    TensorInfo,
    describe,
    read_exact,
)
from casstore.chunking.dtypes import SAFETENSORS_BITS
from casstore.errors import InvalidInputError

HEADER_LIMIT = 100_000_000
"""Largest header accepted (the limit the safetensors library itself applies)."""


def looks_like_safetensors(head: bytes, size: int) -> bool:
    """Cheap sniff on the first bytes: a sane header length followed by ``{``."""
    if len(head) < 9:
        return False
    (n,) = struct.unpack_from("<Q", head)
    return 2 <= n <= min(HEADER_LIMIT, size - 8) and head[8:9] == b"{"


def parse_safetensors(read_at: ReadAt, size: int, filename: str = "") -> FileLayout:
    """The layout of a safetensors file; InvalidInputError if anything in it is wrong."""
    where = describe(filename)
    if size < 8:
        raise InvalidInputError(f"{where}: {size} bytes is too short for a safetensors header")
    (n,) = struct.unpack("<Q", read_exact(read_at, 0, 8, filename))
    if n > HEADER_LIMIT:
        raise InvalidInputError(f"{where}: safetensors header length {n} exceeds {HEADER_LIMIT}")
    if n > size - 8:
        raise InvalidInputError(
            f"{where}: safetensors header length {n} runs past the end of the "
            f"{size}-byte file (truncated or not safetensors)"
        )
    raw = b"".join(
        read_exact(read_at, 8 + pos, min(MAX_WINDOW, n - pos), filename)
        for pos in range(0, n, MAX_WINDOW)
    )
    header = _decode(raw, where)
    metadata = _metadata(header.pop("__metadata__", None), where)
    data_start = 8 + n
    tensors = [_tensor(name, entry, data_start, size, where) for name, entry in header.items()]
    tensors.sort(key=lambda t: (t.offset, t.length, t.name))
    _check_disjoint(tensors, where)
    return FileLayout(SAFETENSORS, tuple(tensors), metadata)


def _decode(raw: bytes, where: str) -> dict[str, Any]:
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except UnicodeDecodeError as e:
        raise InvalidInputError(f"{where}: safetensors header is not UTF-8: {e}") from None
    except (ValueError, RecursionError) as e:
        raise InvalidInputError(f"{where}: safetensors header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise InvalidInputError(f"{where}: safetensors header is not a JSON object")
    return header


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"duplicate key {dup!r}")
    return obj


def _metadata(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidInputError(f"{where}: safetensors __metadata__ must map strings to strings")
    return value


def _tensor(name: str, entry: Any, data_start: int, size: int, where: str) -> TensorInfo:
    def bad(why: str) -> InvalidInputError:
        return InvalidInputError(f"{where}: safetensors tensor {name!r}: {why}")

    if not isinstance(entry, dict):
        raise bad("entry is not a JSON object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or not dtype or len(dtype) > 32:
        raise bad(f"invalid dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise bad(f"invalid shape {shape!r}")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_is_count, offsets)):
        raise bad(f"invalid data_offsets {offsets!r}")
    begin, end = offsets
    if begin > end or end > size - data_start:
        raise bad(
            f"data_offsets [{begin}, {end}] do not fit the {size - data_start}-byte data "
            "section (truncated file or lying header)"
        )
    bits = SAFETENSORS_BITS.get(dtype)
    if bits is not None and math.prod(shape) * bits != (end - begin) * 8:
        raise bad(f"{end - begin} bytes do not hold shape {shape} of {dtype}")
    return TensorInfo(name, dtype, tuple(shape), data_start + begin, end - begin)


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _check_disjoint(tensors: list[TensorInfo], where: str) -> None:
    last: TensorInfo | None = None
    for t in tensors:
        if not t.length:
            continue
        if last is not None and t.offset < last.offset + last.length:
            raise InvalidInputError(
                f"{where}: safetensors tensors {last.name!r} and {t.name!r} overlap"
            )
        last = t
