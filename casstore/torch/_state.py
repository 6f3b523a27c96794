"""Training state as a tree, stored without pickle: a msgpack skeleton plus named tensors.

A state is any nesting of dicts, lists, tuples, ``None``, bools, ints (64-bit), floats,
strings, bytes and tensors, e.g. an AdamW ``state_dict()`` (int keys, ``param_groups`` with
tuples, 0-d ``step`` tensors). :func:`flatten` turns it into msgpack bytes in which every
tensor is a reference by name (msgpack extension type 2; tuples are type 1), and the tensors
themselves, which the caller stores in a safetensors file (deduplicated and lazily readable
like weights). :func:`unflatten` rebuilds the tree: msgpack never runs code, and an unknown
extension type or a malformed skeleton is a CorruptObjectError. Anything else in a state (a
numpy scalar, a function, an arbitrary object) is refused at save time with its path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgpack
import torch

from casstore.errors import CorruptObjectError, InvalidInputError

_TUPLE = 1
_TENSOR = 2
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


class TensorRef:
    """A tensor's place in an unflattened skeleton, before its bytes are read."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"TensorRef({self.name!r})"


def flatten(state: Any, root: str) -> tuple[bytes, dict[str, torch.Tensor]]:
    """(msgpack skeleton, ``{name: tensor}``); tensor names are readable paths under ``root``
    (``optimizer/state/0/exp_avg``). InvalidInputError names the first value it cannot store."""
    tensors: dict[str, torch.Tensor] = {}
    seen: dict[int, str] = {}

    def name_for(path: tuple[str, ...], t: torch.Tensor) -> str:
        if id(t) in seen:  # the same tensor object twice: one stored tensor
            return seen[id(t)]
        base = "/".join(path)
        name, n = base, 1
        while name in tensors:
            n += 1
            name = f"{base}#{n}"
        tensors[name] = t
        seen[id(t)] = name
        return name

    def pack(obj: Any, path: tuple[str, ...]) -> Any:
        if obj is None or isinstance(obj, (bool, str, bytes)):
            return obj
        if isinstance(obj, int):
            if not _INT_MIN <= obj <= _INT_MAX:
                raise InvalidInputError(f"{'/'.join(path)}: int {obj} does not fit 64 bits")
            return int(obj)
        if isinstance(obj, float):
            return float(obj)
        if isinstance(obj, torch.Tensor):
            return msgpack.ExtType(_TENSOR, name_for(path, obj).encode())
        if isinstance(obj, Mapping):
            out = {}
            for k, v in obj.items():
                key = pack_key(k, path)
                out[key] = pack(v, (*path, str(k)))
            return out
        if isinstance(obj, list):
            return [pack(v, (*path, str(i))) for i, v in enumerate(obj)]
        if isinstance(obj, tuple):
            items = [pack(v, (*path, str(i))) for i, v in enumerate(obj)]
            return msgpack.ExtType(_TUPLE, msgpack.packb(items, use_bin_type=True))
        raise InvalidInputError(
            f"{'/'.join(path)}: a {type(obj).__module__}.{type(obj).__qualname__} cannot be "
            "stored in training state (dicts, lists, tuples, None, bool, int, float, str, "
            "bytes and tensors can; convert it, e.g. with .item() or .tolist())"
        )

    def pack_key(k: Any, path: tuple[str, ...]) -> Any:
        if isinstance(k, (torch.Tensor, list, dict)):
            raise InvalidInputError(f"{'/'.join(path)}: a {type(k).__name__} as a dict key")
        return pack(k, (*path, "<key>"))

    try:
        raw = msgpack.packb(pack(state, (root,)), use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as e:  # pragma: no cover - checked above
        raise InvalidInputError(f"training state cannot be stored: {e}") from None
    return raw, tensors


def unflatten(raw: bytes) -> Any:
    """The skeleton with a :class:`TensorRef` where each tensor goes."""

    def ext(code: int, data: bytes) -> Any:
        if code == _TENSOR:
            return TensorRef(data.decode())
        if code == _TUPLE:
            items = msgpack.unpackb(data, raw=False, ext_hook=ext, strict_map_key=False)
            if not isinstance(items, list):
                raise CorruptObjectError("training state: a tuple that is not a list")
            return tuple(items)
        raise CorruptObjectError(f"training state: unknown msgpack extension type {code}")

    try:
        return msgpack.unpackb(raw, raw=False, ext_hook=ext, strict_map_key=False)
    except CorruptObjectError:
        raise
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError, UnicodeDecodeError) as e:
        raise CorruptObjectError(f"training state is not valid msgpack: {e}") from None


def refs(tree: Any) -> list[str]:
    """The tensor names a skeleton refers to, in order."""
    out: list[str] = []
    _walk(tree, lambda r: out.append(r.name) or r)
    return out


def fill(tree: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """The tree with every :class:`TensorRef` replaced by its tensor."""

    def get(r: TensorRef) -> torch.Tensor:
        try:
            return tensors[r.name]
        except KeyError:
            raise CorruptObjectError(f"training state names a missing tensor {r.name!r}") from None

    return _walk(tree, get)


def _walk(obj: Any, on_ref: Callable[[TensorRef], Any]) -> Any:
    if isinstance(obj, TensorRef):
        return on_ref(obj)
    if isinstance(obj, dict):
        for k in obj:
            if isinstance(k, TensorRef):
                raise CorruptObjectError("training state: a tensor as a dict key")
        return {k: _walk(v, on_ref) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_walk(v, on_ref) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_walk(v, on_ref) for v in obj)
    return obj


def select(tree: Any, parts: Iterable[str] | None) -> Any:
    """Only the named top-level parts of a dict tree (all of them for None)."""
    if parts is None or not isinstance(tree, dict):
        return tree
    wanted = set(parts)
    return {k: (v if k in wanted else None) for k, v in tree.items()}
