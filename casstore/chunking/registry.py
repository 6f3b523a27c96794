"""Chunkers by canonical name, so the name recorded in a manifest re-creates the chunker.

Names carry every parameter: ``fastcdc/avg=65536,min=16384,max=262144``,
``fixed/size=1048576``, ``tensor/max=16777216;fastcdc/avg=65536,min=16384,max=262144``.
"""

from __future__ import annotations

import functools
import re

from casstore.chunking.base import Chunker
from casstore.chunking.chunkers import FastCDCChunker, FixedChunker, TensorChunker
from casstore.chunking.fastcdc import CDCParams
from casstore.errors import InvalidInputError

_PART = re.compile(r"([a-z]+)/([a-z]+=[0-9]+(?:,[a-z]+=[0-9]+)*)")


def make_chunker(
    kind: str = "tensor",
    *,
    max_chunk: int = 16 << 20,
    cdc_avg: int = 64 << 10,
    cdc_min: int | None = None,
    cdc_max: int | None = None,
) -> Chunker:
    """A chunker of ``kind`` "tensor" | "fastcdc" | "fixed" (``max_chunk`` is the fixed size).

    ``cdc_min``/``cdc_max`` default to ``cdc_avg/4`` and ``cdc_avg*4``.
    """
    if kind == "fixed":
        return FixedChunker(max_chunk)
    cdc = CDCParams.of(cdc_avg, cdc_min, cdc_max)
    if kind == "fastcdc":
        return FastCDCChunker(cdc)
    if kind == "tensor":
        return TensorChunker(max_chunk, cdc)
    raise InvalidInputError(f"unknown chunker kind {kind!r} (tensor, fastcdc, fixed)")


@functools.lru_cache(maxsize=64)
def _by_name(name: str) -> Chunker:
    parts = [_parse_part(p, name) for p in name.split(";")]
    kinds = [kind for kind, _ in parts]
    if kinds == ["fastcdc"]:
        chunker: Chunker = FastCDCChunker(_cdc(parts[0][1], name))
    elif kinds == ["fixed"]:
        chunker = FixedChunker(_params(parts[0][1], ("size",), name)["size"])
    elif kinds == ["tensor", "fastcdc"]:
        max_chunk = _params(parts[0][1], ("max",), name)["max"]
        chunker = TensorChunker(max_chunk, _cdc(parts[1][1], name))
    else:
        raise InvalidInputError(f"unknown chunker {name!r}")
    if chunker.name != name:
        raise InvalidInputError(f"chunker name {name!r} is not canonical ({chunker.name!r})")
    return chunker


def get_chunker(name: str) -> Chunker:
    """The chunker a canonical name describes; ``get_chunker(c.name).name == c.name``."""
    if not isinstance(name, str) or len(name) > 256:
        raise InvalidInputError(f"invalid chunker name {name!r}")
    return _by_name(name)


def _parse_part(part: str, name: str) -> tuple[str, str]:
    match = _PART.fullmatch(part)
    if match is None:
        raise InvalidInputError(f"malformed chunker name {name!r}")
    return match.group(1), match.group(2)


def _params(text: str, keys: tuple[str, ...], name: str) -> dict[str, int]:
    pairs = [item.split("=") for item in text.split(",")]
    if [k for k, _ in pairs] != list(keys):
        raise InvalidInputError(f"chunker {name!r} needs parameters {', '.join(keys)} in order")
    return {k: int(v) for k, v in pairs}


def _cdc(text: str, name: str) -> CDCParams:
    p = _params(text, ("avg", "min", "max"), name)
    return CDCParams.of(p["avg"], p["min"], p["max"])
