"""``torch.distributed.checkpoint`` storage in a casstore store: N ranks write, one version.

Every rank turns its write items into one safetensors file (``rank-00000.safetensors``: tensor
shards as tensors, pickled objects as ``U8`` byte tensors) whose chunks go straight into the
store, deduplicated like any commit, and leaves the file's entry under ``tmp/dcp/<token>/``.
The coordinator's ``finish`` commits those entries plus ``dcp-metadata.json`` (DCP's metadata
as JSON, not a pickle) as one version. Reading resolves the version once, checks every rank
resolved the same one, reads only the needed chunks, and refuses pickled objects that would run
code before DCP's planner unpickles them. The writer applies the same check to every object
before storing anything, so whatever it accepts the reader loads: a non-tensor value outside
the allow-list (a numpy scalar, say) is refused at save time unless named in
``allow_globals=`` (readers pass the same list; the checkpoint records it so a refusal can
name it, but a reader never trusts a store's record by itself)::

    w = CasstoreStorageWriter("s3://bucket/ckpts", "llama", metrics={"loss": 1.9})
    dcp.save(state_dict, storage_writer=w)          # on every rank
    dcp.load(state_dict, storage_reader=CasstoreStorageReader(url, "llama", "current"))
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import uuid
from collections.abc import Iterable
from typing import Any

import torch
from torch.distributed._shard._utils import narrow_tensor_by_index
from torch.distributed.checkpoint.metadata import (
    BytesStorageMetadata,
    ChunkStorageMetadata,
    Metadata,
    MetadataIndex,
    StorageMeta,
    TensorProperties,
    TensorStorageMetadata,
)
from torch.distributed.checkpoint.planner import (
    LoadItemType,
    LoadPlan,
    LoadPlanner,
    SavePlan,
    SavePlanner,
    WriteItemType,
)
from torch.distributed.checkpoint.storage import StorageReader, StorageWriter, WriteResult
from torch.futures import Future

from casstore.chunking import detect_layout
from casstore.chunking.torch_pickle import check_global_name
from casstore.errors import (
    ConflictError,
    CorruptObjectError,
    InvalidInputError,
    NotFoundError,
    UnsafePickleError,
    UnsupportedError,
)
from casstore.repo.catalog import Version
from casstore.repo.commit import CommitResult
from casstore.repo.keys import check_name
from casstore.torch._common import StoreLike, open_repo, resolve_version, st_dtype, tensor_bytes
from casstore.torch._consolidate import DCP_METADATA, FORMAT, read_document
from casstore.torch._reading import TensorIndex
from casstore.torch._safetensors import Blob, SafetensorsSource
from casstore.torch._staging import decode_entry, encode_entry, stage_file, staging_key

DCP_VERSION = "1.0.0"
READ_BATCH = 256 << 20  # bytes of tensors read at once by one rank

_MEMORY_FORMATS = {
    "contiguous": torch.contiguous_format,
    "channels_last": torch.channels_last,
    "preserve": torch.preserve_format,
}


@dataclasses.dataclass(frozen=True)
class _Stage:
    """SavePlan.storage_data: the checkpoint's staging token and the rank's number."""

    token: str
    rank: int


@dataclasses.dataclass(frozen=True)
class _Where:
    """WriteResult.storage_data: which tensor of which rank file holds an item."""

    rank: int
    name: str


def _rank_file(rank: int) -> str:
    return f"rank-{rank:05d}.safetensors"


def _item_name(index: MetadataIndex) -> str:
    offsets = "" if index.offset is None else ",".join(map(str, index.offset))
    return f"{index.fqn}@{offsets}"


class CasstoreStorageWriter(StorageWriter):
    """Writes a distributed checkpoint into ``store`` as one new version of ``model``.

    ``commit_options`` go to :meth:`Repository.commit_sources` (``metrics=``, ``tags=``,
    ``ref=``, ``version=``...). After ``dcp.save`` the coordinator's ``result`` is the
    CommitResult, and on every rank the returned metadata's ``storage_meta.checkpoint_id`` is
    the new version's full name. Pickled objects (non-tensor values) pass the reader's check
    before anything is stored; ``allow_globals`` (``"MODULE.NAME"``) lets them name more
    globals; the list is recorded in the checkpoint so a refusing reader can name it (readers
    must allow the same globals themselves: DCP's planner unpickles objects for real).
    """

    def __init__(
        self,
        store: StoreLike,
        model: str,
        *,
        allow_globals: Iterable[str] = (),
        **commit_options: Any,
    ) -> None:
        super().__init__()
        self.store = store
        self.model = check_name("model", model)
        self.allow_globals = tuple(sorted(set(map(check_global_name, allow_globals))))
        self.commit_options = commit_options
        self.result: CommitResult | None = None
        self.reset()

    def reset(self, checkpoint_id: str | os.PathLike[str] | None = None) -> None:
        self.checkpoint_id = None if checkpoint_id is None else os.fspath(checkpoint_id)
        self.save_id = uuid.uuid4().hex
        self.result = None
        self._token: str | None = None
        self._ranks = 0

    def set_up_storage_writer(self, is_coordinator: bool, *args: Any, **kwargs: Any) -> None:
        if not kwargs.get("use_collectives", True):
            raise UnsupportedError("casstore makes one version per checkpoint: use collectives")
        self.is_coordinator = is_coordinator

    def prepare_local_plan(self, plan: SavePlan) -> SavePlan:
        return plan

    def prepare_global_plan(self, plans: list[SavePlan]) -> list[SavePlan]:
        self._token = token = uuid.uuid4().hex
        self._ranks = len(plans)
        return [dataclasses.replace(p, storage_data=_Stage(token, i)) for i, p in enumerate(plans)]

    def write_data(self, plan: SavePlan, planner: SavePlanner) -> Future[list[WriteResult]]:
        stage: _Stage = plan.storage_data
        blobs: list[Blob] = []
        results: list[WriteResult] = []
        for item in plan.items:
            name = _item_name(item.index)
            if item.type == WriteItemType.BYTE_IO:
                data = planner.resolve_data(item).getvalue()
                _check_object(data, item.index.fqn, self.allow_globals)  # what readers check
                blob = Blob(name, "U8", (len(data),), len(data), lambda d=data: memoryview(d))
            else:
                td = item.tensor_data
                shape = tuple(td.chunk.sizes)  # this rank's piece (td.size: the whole)
                nbytes = math.prod(shape) * td.properties.dtype.itemsize
                dtype = st_dtype(td.properties.dtype, item.index.fqn)
                blob = Blob(name, dtype, shape, nbytes, _resolver(planner, item))
            blobs.append(blob)
            results.append(WriteResult(item.index, blob.nbytes, _Where(stage.rank, name)))
        fut: Future[list[WriteResult]] = Future()
        fut.set_result(results)
        if not blobs:
            return fut
        source = SafetensorsSource(_rank_file(stage.rank), blobs, {"format": "dcp"})
        with open_repo(self.store) as repo:
            entry = stage_file(repo, source)
            repo.store.put(staging_key(stage.token, stage.rank), encode_entry(entry))
        return fut

    def finish(self, metadata: Metadata, results: list[list[WriteResult]]) -> None:
        if self._token is None:
            raise InvalidInputError("finish() before prepare_global_plan() on the coordinator")
        where = {r.index: r.storage_data for rank in results for r in rank}
        ranks = sorted({w.rank for w in where.values()})
        metadata.version = DCP_VERSION
        metadata.storage_data = where
        metadata.storage_meta = self.storage_meta()
        raw = encode_metadata(metadata, self.allow_globals)
        with open_repo(self.store) as repo:
            keys = [staging_key(self._token, r) for r in ranks]
            staged = repo.store.get_many(keys)
            entries = [decode_entry(staged[k], k) for k in keys]
            for r, e in zip(ranks, entries):
                if e.path != _rank_file(r):
                    raise CorruptObjectError(f"staged entry of rank {r} names {e.path!r}")
            self.result = repo.commit_sources(
                self.model,
                [(DCP_METADATA, len(raw), lambda o, n: raw[o : o + n])],
                prechunked=entries,
                **self.commit_options,
            )
            repo.store.delete_many(staging_key(self._token, r) for r in range(self._ranks))
        metadata.storage_meta.checkpoint_id = self.result.version.name

    def storage_meta(self) -> StorageMeta | None:
        return StorageMeta(checkpoint_id=self.checkpoint_id, save_id=self.save_id)

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: str | os.PathLike[str]) -> bool:
        return False  # never picked automatically: construct it with a store and a model


def _resolver(planner: SavePlanner, item: Any):
    def data() -> memoryview:
        t = planner.resolve_data(item)
        if tuple(t.shape) != tuple(item.tensor_data.chunk.sizes):
            raise InvalidInputError(f"{item.index.fqn}: planner gave a tensor of another size")
        return tensor_bytes(t)

    return data


class CasstoreStorageReader(StorageReader):
    """Reads a distributed checkpoint version; DCP's planner reshards it to the new layout.

    Pickled objects are checked before DCP's planner unpickles them (with its own
    ``weights_only=False``): only globals in ``allow_globals`` are let through, never the
    list a checkpoint records (a store's content must not decide what code a reader runs);
    a refusal names the globals the writer allowed, to pass on purpose."""

    def __init__(
        self,
        store: StoreLike,
        model: str,
        version_or_ref: str = "current",
        *,
        allow_globals: Iterable[str] = (),
    ) -> None:
        super().__init__()
        self.store = store
        self.model = check_name("model", model)
        self.spec = version_or_ref
        self.allow_globals = tuple(map(check_global_name, allow_globals))
        self.reset()

    def reset(self, checkpoint_id: str | os.PathLike[str] | None = None) -> None:
        if checkpoint_id is not None:
            self.spec = os.fspath(checkpoint_id)
        self.load_id = uuid.uuid4().hex
        self.version: Version | None = None
        self.storage_data: dict[MetadataIndex, _Where] = {}
        self._recorded: tuple[str, ...] = ()

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        if kwargs.get("rank") is not None:
            raise NotFoundError("casstore checkpoints have no per-rank metadata")
        with open_repo(self.store) as repo:
            self.version = resolve_version(repo, self.model, self.spec)
            doc = read_document(repo.chunks, self.version)
            md = decode_metadata(doc)
        recorded = doc.get("allow_globals", [])
        if not isinstance(recorded, list) or not all(isinstance(q, str) for q in recorded):
            raise CorruptObjectError(f"{DCP_METADATA}: allow_globals is not a list of names")
        self._recorded = tuple(recorded)
        md.storage_meta.load_id = self.load_id
        return md

    def set_up_storage_reader(
        self, metadata: Metadata, is_coordinator: bool, *args: Any, **kwargs: Any
    ) -> None:
        self.storage_data = metadata.storage_data
        self.is_coordinator = is_coordinator

    def prepare_local_plan(self, plan: LoadPlan) -> LoadPlan:
        assert self.version is not None
        return dataclasses.replace(plan, storage_data=self.version.id.hex())

    def prepare_global_plan(self, plans: list[LoadPlan]) -> list[LoadPlan]:
        ids = {p.storage_data for p in plans}
        if len(ids) > 1:  # a ref moved while the ranks were resolving it
            raise ConflictError(f"ranks resolved {self.model}@{self.spec} to different versions")
        return plans

    def read_data(self, plan: LoadPlan, planner: LoadPlanner) -> Future[None]:
        assert self.version is not None
        with open_repo(self.store) as repo:
            version = repo.get_version(self.model, self.version.version)  # this repo's view
            if version.id != self.version.id or plan.storage_data not in (None, version.id.hex()):
                raise ConflictError(f"{self.model}@{self.spec} changed during the load")
            index = TensorIndex(repo.chunks, version)
            batch: list[Any] = []
            size = 0
            for req in sorted(plan.items, key=lambda r: self._name(r)):
                batch.append(req)
                size += index.slots[self._name(req)].nbytes
                if size >= READ_BATCH:
                    self._read_batch(index, batch, planner)
                    batch, size = [], 0
            self._read_batch(index, batch, planner)
        fut: Future[None] = Future()
        fut.set_result(None)
        return fut

    def _name(self, req: Any) -> str:
        where = self.storage_data.get(req.storage_index)
        if where is None:
            raise CorruptObjectError(f"checkpoint metadata has no storage for {req.storage_index}")
        return where.name

    def _read_batch(self, index: TensorIndex, reqs: list[Any], planner: LoadPlanner) -> None:
        tensors = index.read({self._name(r) for r in reqs})
        for req in reqs:
            stored = tensors[self._name(req)]
            if req.type == LoadItemType.BYTE_IO:
                raw = stored.numpy().tobytes()
                try:
                    _check_object(raw, req.storage_index.fqn, self.allow_globals)
                except UnsafePickleError as e:
                    if not self._recorded:
                        raise
                    raise UnsafePickleError(
                        f"{e}; the checkpoint was written with allow_globals="
                        f"{list(self._recorded)}: pass them to CasstoreStorageReader to load "
                        "it on purpose (DCP unpickles these objects for real)"
                    ) from None
                planner.load_bytes(req, io.BytesIO(raw))
                continue
            piece = narrow_tensor_by_index(stored, req.storage_offsets, req.lengths)
            target = planner.resolve_tensor(req).detach()
            if target.size() != piece.size():
                raise CorruptObjectError(
                    f"{req.storage_index.fqn}: stored {tuple(piece.size())}, "
                    f"expected {tuple(target.size())}"
                )
            target.copy_(piece)
            planner.commit_tensor(req, target)

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: str | os.PathLike[str]) -> bool:
        return False


def _check_object(raw: bytes, fqn: str, allow: Iterable[str] = ()) -> None:
    """DCP's default planner unpickles objects with ``weights_only=False``: refuse (with
    UnsafePickleError) any that would import or call code outside the tensor allow-list and
    ``allow``. The writer and the reader both call this, so they accept the same objects."""
    detect_layout(lambda o, n: raw[o : o + n], len(raw), f"{fqn}.pt", tuple(allow))


# -- metadata as JSON ------------------------------------------------------------------------


def encode_metadata(md: Metadata, allow_globals: Iterable[str] = ()) -> bytes:
    """DCP metadata as JSON (a pickle would run code on load), with the pickle globals the
    writer allowed its objects to name."""
    state: dict[str, Any] = {}
    for fqn, m in md.state_dict_metadata.items():
        if isinstance(m, BytesStorageMetadata):
            state[fqn] = {"kind": "bytes"}
            continue
        p = m.properties
        if p.layout != torch.strided:
            raise UnsupportedError(f"{fqn}: only strided tensors are supported")
        fmt = next(k for k, v in _MEMORY_FORMATS.items() if v == p.memory_format)
        state[fqn] = {
            "kind": "tensor",
            "dtype": str(p.dtype).removeprefix("torch."),
            "size": list(m.size),
            "requires_grad": p.requires_grad,
            "memory_format": fmt,
            "pin_memory": p.pin_memory,
            "chunks": [[list(c.offsets), list(c.sizes)] for c in m.chunks],
        }
    storage = [
        {
            "fqn": i.fqn,
            "offset": None if i.offset is None else list(i.offset),
            "index": i.index,
            "rank": w.rank,
            "name": w.name,
        }
        for i, w in md.storage_data.items()
    ]
    sm = md.storage_meta or StorageMeta()
    doc = {
        "format": FORMAT,
        "dcp_version": md.version,
        "state_dict": state,
        "storage": storage,
        "planner_data": _plain(md.planner_data),
        "allow_globals": sorted(allow_globals),
        "storage_meta": {
            "checkpoint_id": None if sm.checkpoint_id is None else str(sm.checkpoint_id),
            "save_id": sm.save_id,
            "modules": list(sm.modules),
        },
    }
    return json.dumps(doc, sort_keys=True, allow_nan=False).encode()


def decode_metadata(doc: dict[str, Any]) -> Metadata:
    """The DCP metadata a document from :func:`encode_metadata` describes."""
    try:
        state: dict[str, Any] = {}
        for fqn, m in doc["state_dict"].items():
            if m["kind"] == "bytes":
                state[fqn] = BytesStorageMetadata()
                continue
            dtype = getattr(torch, m["dtype"])
            if not isinstance(dtype, torch.dtype):
                raise ValueError(f"bad dtype {m['dtype']!r}")
            props = TensorProperties(
                dtype=dtype,
                requires_grad=bool(m["requires_grad"]),
                memory_format=_MEMORY_FORMATS[m["memory_format"]],
                pin_memory=bool(m["pin_memory"]),
            )
            chunks = [ChunkStorageMetadata(torch.Size(o), torch.Size(s)) for o, s in m["chunks"]]
            state[fqn] = TensorStorageMetadata(props, torch.Size(m["size"]), chunks)
        storage = {
            MetadataIndex(s["fqn"], s["offset"], s["index"]): _Where(int(s["rank"]), s["name"])
            for s in doc["storage"]
        }
        sm = doc["storage_meta"]
        meta = StorageMeta(sm["checkpoint_id"], sm["save_id"], None, list(sm["modules"]))
        return Metadata(state, _unplain(doc["planner_data"]), storage, meta, doc["dcp_version"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CorruptObjectError(f"{DCP_METADATA} is unreadable: {e}") from None


def _plain(obj: Any) -> Any:
    """Planner data (dicts, lists, tuples of plain values) as tagged JSON."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {"t": [_plain(x) for x in obj]}
    if isinstance(obj, list):
        return {"l": [_plain(x) for x in obj]}
    if isinstance(obj, dict):
        return {"d": [[_plain(k), _plain(v)] for k, v in obj.items()]}
    raise UnsupportedError(f"planner data of type {type(obj).__name__} cannot be stored")


def _unplain(obj: Any) -> Any:
    if not isinstance(obj, dict):
        return obj
    ((tag, value),) = obj.items()
    if tag == "t":
        return tuple(_unplain(x) for x in value)
    if tag == "l":
        return [_unplain(x) for x in value]
    if tag == "d":
        return {_unplain(k): _unplain(v) for k, v in value}
    raise ValueError(f"unknown tag {tag!r}")
