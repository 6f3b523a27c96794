"""``save``, ``load`` and ``load_into``: state dicts straight into and out of a store.

``save`` commits a state dict as a standard safetensors file (or HF-style shards plus an index)
built on the fly: the header in memory, tensor bytes read from the tensors themselves, so there
is no temporary checkpoint file. ``load`` reads only the chunks of the requested tensors,
verifies each against its digest, and never unpickles anything outside casstore's tensor
allow-list.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import torch

from casstore.errors import InvalidInputError
from casstore.repo.commit import CommitResult
from casstore.torch._common import StoreLike, open_repo, resolve_version, st_dtype, tensor_bytes
from casstore.torch._consolidate import open_index
from casstore.torch._reading import INDEX_SUFFIX, TIED_KEY
from casstore.torch._safetensors import Blob, SafetensorsSource

DEFAULT_FILENAME = "model.safetensors"

Device = str | torch.device | int


class LoadResult(NamedTuple):
    """What :func:`load_into` found: module keys the version lacks, and stored keys the
    module does not have (the same fields as ``Module.load_state_dict`` returns)."""

    missing_keys: list[str]
    unexpected_keys: list[str]


def state_dict_of(obj: Any) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` from a module or mapping (InvalidInputError otherwise)."""
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise InvalidInputError(f"expected a state dict or a torch.nn.Module, got {type(obj)}")
    out: dict[str, torch.Tensor] = {}
    for name, t in obj.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise InvalidInputError(f"invalid tensor name {name!r}")
        if not isinstance(t, torch.Tensor):
            hint = "; flatten nested dicts" if isinstance(t, Mapping) else ""
            raise InvalidInputError(
                f"{name!r} is a {type(t).__name__}, not a tensor{hint} (put other values in "
                "the version metadata: metrics=, extra=)"
            )
        if t.layout != torch.strided or t.is_quantized or t.device.type == "meta":
            raise InvalidInputError(f"{name!r}: only dense tensors with data can be saved")
        out[name] = t
    if not out:
        raise InvalidInputError("the state dict has no tensors")
    return out


def _blob(name: str, t: torch.Tensor) -> Blob:
    dtype = st_dtype(t.dtype, repr(name))
    return Blob(name, dtype, tuple(t.shape), t.numel() * t.element_size(), lambda: tensor_bytes(t))


def _tied(sd: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """``{alias: name}`` for tensors that are the exact same view of the same memory."""
    first: dict[tuple, str] = {}
    out = {}
    for name in sorted(sd):
        t = sd[name]
        if t.numel() == 0:
            continue
        key = (
            t.device,
            t.untyped_storage().data_ptr(),
            t.storage_offset(),
            tuple(t.shape),
            t.stride(),
            t.dtype,
        )
        if key in first:
            out[name] = first[key]
        else:
            first[key] = name
    return out


def _shards(blobs: list[Blob], max_size: int | None) -> list[list[Blob]]:
    if not max_size:
        return [blobs]
    if max_size < 1:
        raise InvalidInputError(f"max_shard_size must be positive, got {max_size}")
    shards: list[list[Blob]] = [[]]
    size = 0
    for b in sorted(blobs, key=lambda b: b.name):
        if shards[-1] and size + b.nbytes > max_size:
            shards.append([])
            size = 0
        shards[-1].append(b)
        size += b.nbytes
    return shards


def build_sources(
    sd: Mapping[str, torch.Tensor],
    filename: str = DEFAULT_FILENAME,
    *,
    max_shard_size: int | None = None,
    metadata: Mapping[str, str] | None = None,
) -> list[tuple[str, int, Any]]:
    """The virtual files of a state dict: ``(path, size, read_at)`` for ``commit_sources``."""
    if not filename.endswith(".safetensors"):
        raise InvalidInputError(f"filename must end in .safetensors, got {filename!r}")
    meta = {"format": "pt", **{str(k): str(v) for k, v in (metadata or {}).items()}}
    tied = _tied(sd)
    shards = _shards([_blob(n, t) for n, t in sd.items()], max_shard_size)
    if len(shards) == 1:
        names = [filename]
    else:
        stem = filename[: -len(".safetensors")]
        n = len(shards)
        names = [f"{stem}-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    out: list[tuple[str, int, Any]] = []
    weight_map = {}
    for path, blobs in zip(names, shards):
        here = {b.name for b in blobs}
        ties = {a: n for a, n in tied.items() if a in here}
        file_meta = {**meta, TIED_KEY: json.dumps(ties, sort_keys=True)} if ties else meta
        src = SafetensorsSource(path, blobs, file_meta)
        out.append((path, src.size, src.read_at))
        weight_map.update({b.name: posixpath.basename(path) for b in blobs})
    if len(shards) > 1:
        total = sum(t.numel() * t.element_size() for t in sd.values())
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        raw = json.dumps(index, indent=2).encode()
        out.append((filename + INDEX_SUFFIX[len(".safetensors") :], len(raw), _bytes_at(raw)))
    return out


def _bytes_at(raw: bytes):
    return lambda offset, n: raw[offset : offset + n]


def save(
    state_dict_or_module: Mapping[str, torch.Tensor] | torch.nn.Module,
    store: StoreLike,
    model: str,
    *,
    filename: str = DEFAULT_FILENAME,
    max_shard_size: int | None = None,
    safetensors_metadata: Mapping[str, str] | None = None,
    **commit_options: Any,
) -> CommitResult:
    """Commit a state dict (or a module's) as a new version of ``model``, with no temp file.

    The version holds ``filename`` in safetensors format, or with ``max_shard_size`` (bytes)
    HF-style shards ``model-00001-of-0000N.safetensors`` plus ``model.safetensors.index.json``.
    Tensors may live on any device and be non-contiguous; tensors that are the same memory
    (tied weights) are each written (the store keeps their bytes once) and tied again on load.
    ``commit_options`` are :meth:`Repository.commit_sources` options: ``metrics=``,
    ``version=``, ``version_type=``, ``tags=``, ``ref=``, ``change_log=``, ``extra=``, ...
    """
    sd = state_dict_of(state_dict_or_module)
    sources = build_sources(
        sd, filename, max_shard_size=max_shard_size, metadata=safetensors_metadata
    )
    with open_repo(store) as repo:
        return repo.commit_sources(model, sources, **commit_options)


def _move(tensors: dict[str, torch.Tensor], device: Device | None) -> dict[str, torch.Tensor]:
    if device is None:
        return tensors
    moved: dict[int, torch.Tensor] = {}  # tied names stay one tensor
    return {n: moved.setdefault(id(t), t.to(device)) for n, t in tensors.items()}


def load(
    store: StoreLike,
    model: str,
    version_or_ref: str = "current",
    *,
    keys: Iterable[str] | None = None,
    map_location: Device | None = None,
    path: str | None = None,
    allow_globals: Iterable[str] = (),
) -> dict[str, torch.Tensor]:
    """The state dict of a version (``"1.2.0"``, a full name, ``"latest"``, a ref name such
    as ``"current"`` or ``"@best"``), or just the tensors named in ``keys``.

    Only the chunks holding the requested tensors are read, each verified against its digest.
    Works on versions saved by :func:`save`, committed safetensors files (sharded ones through
    their index), ``torch.save`` files, which are parsed without running any pickle code, and
    distributed checkpoints (whole tensors assembled from the ranks' shards).
    ``path`` restricts the lookup to one file or folder of the version. Tensors are created on
    the CPU, then moved to ``map_location`` if given. ``allow_globals`` (``"MODULE.NAME"``)
    lets ``.pt`` pickles name more globals, as inert stubs: never imported or called (the
    globals a file was committed with are allowed again automatically).
    """
    with open_repo(store) as repo:
        index = open_index(repo.chunks, resolve_version(repo, model, version_or_ref), path,
                           allow_globals)
        names = index.names if keys is None else list(dict.fromkeys(keys))
        return _move(index.read(names), map_location)


def stored_names(
    store: StoreLike, model: str, version_or_ref: str = "current", *, path: str | None = None
) -> list[str]:
    """The tensor names a version holds (reads only manifests and small headers)."""
    with open_repo(store) as repo:
        return open_index(repo.chunks, resolve_version(repo, model, version_or_ref), path).names


def load_into(
    module: torch.nn.Module,
    store: StoreLike,
    model: str,
    version_or_ref: str = "current",
    *,
    strict: bool = True,
    map_location: Device | None = None,
    path: str | None = None,
    allow_globals: Iterable[str] = (),
) -> LoadResult:
    """Load a version into ``module`` (its parameters and buffers keep their devices).

    With ``strict`` any missing or unexpected key raises InvalidInputError before a tensor byte
    is read; otherwise the matching keys are loaded and the mismatches reported.
    """
    own = list(module.state_dict().keys())
    with open_repo(store) as repo:
        index = open_index(repo.chunks, resolve_version(repo, model, version_or_ref), path,
                           allow_globals)
        stored = set(index.names)
        missing = [k for k in own if k not in stored]
        unexpected = sorted(stored.difference(own))
        if strict and (missing or unexpected):
            raise InvalidInputError(
                f"{index.version.name} does not match the module: "
                f"missing keys {_few(missing)}, unexpected keys {_few(unexpected)}"
            )
        tensors = _move(index.read([k for k in own if k in stored]), map_location)
    try:
        module.load_state_dict(tensors, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise InvalidInputError(f"cannot load {index.version.name}: {e}") from None
    return LoadResult(missing, unexpected)


def _few(names: list[str], n: int = 5) -> str:
    if not names:
        return "none"
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(map(repr, names[:n])) + more
