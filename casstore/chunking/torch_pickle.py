"""The torch allow-list for :mod:`.safe_pickle`, and what its stubs tell about tensors.

Every global a ``torch.save`` pickle may name (OrderedDict, ``torch._utils._rebuild_*``,
storage classes, dtypes, ``torch.Size``, ...) maps to an inert stub; nothing imports torch.
Also the safety check of legacy (non-zip) ``torch.save`` files and plain pickles.
"""

from __future__ import annotations

import math
import re
from collections import Counter, OrderedDict
from collections.abc import Collection, Iterator
from typing import Any

from casstore.chunking.base import ReadAt
from casstore.chunking.dtypes import TORCH_DTYPES, TORCH_STORAGE_CLASSES, UNTYPED
from casstore.chunking.safe_pickle import (
    Global,
    Opaque,
    Resolve,
    Stub,
    describe_object,
    load_at,
    load_bytes,
)
from casstore.errors import InvalidInputError, UnsafePickleError

ALLOW_GLOBALS_KEY = "casstore.allow_globals"
"""File metadata of a torch file committed with ``allow_globals``: the globals it was checked
with (comma-separated), which reading it allows again."""

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
"""First pickle of a legacy (pre-zip) ``torch.save`` file."""


class StorageStub(Stub):
    """A storage named by a persistent id: zip entry ``data/<key>`` of ``numel`` elements."""

    __slots__ = ("dtype", "key", "numel")

    def __init__(self, key: str, dtype: str, numel: int):
        self.key, self.dtype, self.numel = key, dtype, numel


class TensorStub(Stub):
    """A strided view ``(offset, shape, stride)`` in elements of ``dtype`` on a storage."""

    __slots__ = ("dtype", "offset", "shape", "storage", "stride")

    def __init__(self, storage: StorageStub, offset: int, shape, stride, dtype: str):
        self.storage, self.offset, self.dtype = storage, offset, dtype
        self.shape, self.stride = tuple(shape), tuple(stride)
        if not (_counts(self.shape) and _counts((offset,)) and len(self.stride) == len(shape)):
            raise InvalidInputError("tensor with invalid offset, shape or stride")
        if not all(type(s) is int for s in self.stride):
            raise InvalidInputError("tensor with invalid stride")

    def is_contiguous(self) -> bool:
        expected = 1
        for size, stride in zip(reversed(self.shape), reversed(self.stride)):
            if size != 1 and stride != expected:
                return False
            expected *= size
        return True

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def _counts(values: tuple) -> bool:
    return all(type(v) is int and v >= 0 for v in values)


# -- calls of allowed globals --------------------------------------------------------------


def _storage_dtype(stub: Any) -> str:
    info = stub.info if type(stub) is Global else None
    if not (isinstance(info, tuple) and info[0] == "storage"):
        raise InvalidInputError(f"{describe_object(stub)} is not a storage type")
    return info[1]


def _dtype(stub: Any) -> str:
    info = stub.info if type(stub) is Global else None
    if not (isinstance(info, tuple) and info[0] == "dtype"):
        raise InvalidInputError(f"{describe_object(stub)} is not a dtype")
    return info[1]


def _tensor(args: tuple, nargs: tuple[int, ...], dtype: str | None = None) -> TensorStub:
    if len(args) not in nargs:
        raise InvalidInputError(f"tensor rebuild with {len(args)} arguments")
    storage, offset, shape, stride = args[:4]
    if type(storage) is not StorageStub:
        raise InvalidInputError("tensor rebuilt from something other than a storage")
    return TensorStub(storage, offset, shape, stride, dtype or storage.dtype)


def _rebuild_v3(args: tuple) -> TensorStub:
    if len(args) not in (7, 8):
        raise InvalidInputError(f"_rebuild_tensor_v3 with {len(args)} arguments")
    return _tensor(args, (7, 8), _dtype(args[6]))


def _first_tensor(args: tuple, nargs: tuple[int, ...]) -> Any:
    if len(args) not in nargs:
        raise InvalidInputError(f"parameter rebuild with {len(args)} arguments")
    return args[0]


def _from_type_v2(args: tuple) -> Any:
    func, new_type, fargs, _state = args
    if type(new_type) is not Global or new_type.qualname not in _TENSOR_TYPES:
        raise UnsafePickleError(f"tensor subclass {describe_object(new_type)} is not allowed")
    if type(func) is not Global or func.call is None or type(fargs) is not tuple:
        raise InvalidInputError("_rebuild_from_type_v2 needs a rebuild function and arguments")
    return func.call(fargs)


def _parameter(args: tuple) -> Any:
    return args[0] if args else Opaque("torch.nn.Parameter", args)


def _ordered_dict(args: tuple) -> OrderedDict:
    if args and type(args[0]) not in (list, tuple, dict, OrderedDict):
        raise InvalidInputError("OrderedDict from an unexpected argument")
    return OrderedDict(*args)


def _bytearray(args: tuple) -> bytearray:
    if args and type(args[0]) not in (bytes, str):  # bytearray(n) would allocate n bytes
        raise InvalidInputError("bytearray from an unexpected argument")
    return _encode(args) if len(args) == 2 else bytearray(*args)


def _encode(args: tuple) -> Any:
    text, encoding = args
    if type(text) is not str or encoding not in ("latin1", "latin-1"):
        raise InvalidInputError("_codecs.encode supports only str to latin1")
    return text.encode("latin-1")


def _collection(kind: type):
    def call(args: tuple) -> Any:
        if args and type(args[0]) not in (list, tuple, set, frozenset, dict):
            raise InvalidInputError(f"{kind.__name__} from an unexpected argument")
        return kind(*args)

    return call


def _size(args: tuple) -> tuple:
    (dims,) = args
    if type(dims) not in (list, tuple) or not _counts(tuple(dims)):
        raise InvalidInputError("torch.Size of something other than counts")
    return tuple(dims)


def _complex(args: tuple) -> complex:
    if not all(type(a) in (int, float) for a in args):
        raise InvalidInputError("complex of something other than numbers")
    return complex(*args)


def _opaque(qualname: str):
    return lambda args: Opaque(qualname, args)


# -- the allow-list ------------------------------------------------------------------------

_TENSOR_TYPES = {"torch.Tensor", "torch._tensor.Tensor", "torch.nn.parameter.Parameter"}


def _allowed() -> dict[str, Global]:
    calls: dict[str, Any] = {
        "collections.OrderedDict": _ordered_dict,
        "collections.Counter": _collection(Counter),
        "builtins.set": _collection(set),
        "builtins.frozenset": _collection(frozenset),
        "builtins.list": _collection(list),
        "builtins.tuple": _collection(tuple),
        "builtins.dict": _collection(dict),
        "builtins.bytearray": _bytearray,
        "builtins.complex": _complex,
        "_codecs.encode": _encode,
        "torch.Size": _size,
        "torch.device": _opaque("torch.device"),
        "torch.serialization._get_layout": _opaque("torch.layout"),
        "torch._utils._rebuild_tensor": lambda a: _tensor(a, (4,)),
        "torch._utils._rebuild_tensor_v2": lambda a: _tensor(a, (6, 7)),
        "torch._utils._rebuild_tensor_v3": _rebuild_v3,
        "torch._utils._rebuild_parameter": lambda a: _first_tensor(a, (3,)),
        "torch._utils._rebuild_parameter_with_state": lambda a: _first_tensor(a, (4,)),
        "torch._tensor._rebuild_from_type_v2": _from_type_v2,
        "torch.nn.parameter.Parameter": _parameter,
    }
    for name in (
        "_rebuild_qtensor",
        "_rebuild_sparse_tensor",
        "_rebuild_meta_tensor_no_storage",
        "_rebuild_nested_tensor",
        "_rebuild_wrapper_subclass",
        "_rebuild_device_tensor_from_cpu_tensor",
    ):
        calls[f"torch._utils.{name}"] = _opaque(f"torch._utils.{name}")
    table = {qualname: Global(qualname, call) for qualname, call in calls.items()}
    values: dict[str, Any] = {"torch.Tensor": None, "torch._tensor.Tensor": None}
    for layout in ("strided", "sparse_coo", "sparse_csr", "sparse_csc", "sparse_bsr", "_mkldnn"):
        values[f"torch.{layout}"] = ("layout", layout)
    for scheme in (
        "per_tensor_affine",
        "per_tensor_symmetric",
        "per_channel_affine",
        "per_channel_symmetric",
        "per_channel_affine_float_qparams",
    ):
        values[f"torch.{scheme}"] = ("qscheme", scheme)
    dtypes = [*TORCH_DTYPES, *(f"{u}int{b}" for u in ("", "u") for b in range(1, 8))]
    values.update({f"torch.{d}": ("dtype", d) for d in dtypes})
    for cls, dtype in TORCH_STORAGE_CLASSES.items():
        values[f"torch.{cls}"] = ("storage", dtype)
    values["torch.storage.UntypedStorage"] = ("storage", UNTYPED)
    values["torch.UntypedStorage"] = ("storage", UNTYPED)
    table.update({qualname: Global(qualname, None, info) for qualname, info in values.items()})
    return table


_ALLOWED = _allowed()


def resolve(module: str, name: str) -> Global:
    """The stub for an allowed global; UnsafePickleError naming any other."""
    stub = _ALLOWED.get(f"{module}.{name}")
    if stub is None:
        raise UnsafePickleError(_refusal(f"{module}.{name}"))
    return stub


def _refusal(qualname: str) -> str:
    return (f"pickle references disallowed global {qualname} (if this file is yours and you "
            f"trust it, allow it on purpose: allow_globals=[{qualname!r}] or --allow-global "
            f"{qualname}; it is never imported or called, the value stays opaque)")


def recorded_allow(metadata: dict[str, str]) -> tuple[str, ...]:
    """The allow-list a file was committed with (see :data:`ALLOW_GLOBALS_KEY`)."""
    text = metadata.get(ALLOW_GLOBALS_KEY, "")
    return tuple(q for q in text.split(",") if q)


def check_global_name(qualname: object) -> str:
    """``MODULE.NAME`` as an allow-list entry (dotted identifiers)."""
    if not isinstance(qualname, str) or not _QUALNAME.fullmatch(qualname):
        raise InvalidInputError(f"allowed global must be MODULE.NAME, e.g. argparse.Namespace; "
                                f"got {qualname!r}")
    return qualname


_QUALNAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")


def resolver(allow: Collection[str] = ()) -> Resolve:
    """:func:`resolve`, plus the globals in ``allow`` (``"argparse.Namespace"``) as inert
    stubs: a pickle may name them and call them, and gets an :class:`Opaque` value back."""
    if not allow:
        return resolve
    extra = {q: Global(q, _opaque(q)) for q in map(check_global_name, allow)}

    def resolve_allowed(module: str, name: str) -> Global:
        q = f"{module}.{name}"
        stub = _ALLOWED.get(q) or extra.get(q)
        if stub is None:
            raise UnsafePickleError(_refusal(q))
        return stub

    return resolve_allowed


def persistent_load(pid: Any) -> StorageStub:
    """Storages only: ``('storage', type, key, location, numel[, view])``."""
    if type(pid) is not tuple or not pid or pid[0] not in ("storage", b"storage"):
        raise UnsafePickleError("persistent id other than a storage is not allowed")
    if len(pid) not in (5, 6):
        raise InvalidInputError(f"storage persistent id with {len(pid)} fields")
    _, storage_type, key, location, numel = pid[:5]
    if type(key) is not str or type(location) is not str or not _counts((numel,)):
        raise InvalidInputError("malformed storage persistent id")
    return StorageStub(key, _storage_dtype(storage_type), numel)


def load_torch_pickle(
    read_at: ReadAt, start: int, end: int, filename: str = "", allow: Collection[str] = ()
) -> tuple[Any, int]:
    """The object of the pickle at ``[start, end)`` with torch's globals (and ``allow``'s)
    as stubs."""
    return load_at(read_at, start, end, resolver(allow), persistent_load, filename)


def check_legacy_stream(
    read_at: ReadAt, size: int, filename: str = "", allow: Collection[str] = ()
) -> None:
    """Check the pickles at the start of a legacy ``torch.save`` file (or any pickle).

    A legacy file holds five pickles (magic number, protocol, system info, the object, the
    storage keys) and then raw storage bytes; anything else is one pickle that must be safe.
    """
    obj, pos = load_torch_pickle(read_at, 0, size, filename, allow)
    if type(obj) is not int or obj != LEGACY_MAGIC:
        return
    for _ in range(4):
        _, n = load_torch_pickle(read_at, pos, size, filename, allow)
        pos += n


def check_pickle_safe(data: bytes) -> None:
    """Raise UnsafePickleError if the pickle(s) in ``data`` would import or call anything
    outside the tensor allow-list (InvalidInputError if they are malformed)."""
    view = memoryview(data)
    obj, pos = load_bytes(view, resolve, persistent_load)
    if type(obj) is int and obj == LEGACY_MAGIC:
        for _ in range(4):
            _, n = load_bytes(view, resolve, persistent_load, start=pos)
            pos += n


MAX_NESTING = 256
"""A tensor nested deeper than this inside containers is refused (its dotted key path would be
that long; a bomb of many deep tensors would make naming them quadratic work)."""

_Path = tuple[Any, ...] | None  # (parent path, key), built into a dotted name only for tensors


def _dotted(path: _Path) -> str:
    keys = []
    while path is not None:
        path, key = path
        keys.append(str(key))
    return ".".join(reversed(keys))


def named_tensors(obj: Any) -> Iterator[tuple[str, TensorStub]]:
    """Every tensor reachable through dicts, lists and tuples, with its dotted key path.

    Each container is visited once (a pickle's memo can make a graph with shared or cyclic
    containers); a tensor shared by several keys is reported under each. Work is linear in
    the containers visited: a path is spelled out only for a tensor, at most
    :data:`MAX_NESTING` levels deep.
    """
    seen: set[int] = set()
    todo: list[tuple[_Path, Any, int]] = [(None, obj, 0)]
    while todo:
        path, node, depth = todo.pop()
        if type(node) is TensorStub:
            if depth > MAX_NESTING:
                raise InvalidInputError(f"a tensor nested more than {MAX_NESTING} levels deep")
            yield _dotted(path), node
            continue
        if isinstance(node, dict):
            items = [(k, v) for k, v in node.items() if type(k) in (str, int)]
        elif type(node) in (list, tuple):
            items = list(enumerate(node))
        else:
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        todo.extend(((path, k), v, depth + 1) for k, v in reversed(items))


def tensor_dtype(stub: TensorStub) -> tuple[str, int] | None:
    """(reported dtype name, bytes per element), or None for dtypes without a byte size."""
    return TORCH_DTYPES.get(stub.dtype)
