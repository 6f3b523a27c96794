"""Whole tensors from a distributed-checkpoint version, without ``torch.distributed``.

``dcp-metadata.json`` records, for every tensor, its size and dtype and which stored piece of
which rank file holds each of its shards; :class:`DcpIndex` assembles the requested tensors
from those pieces (reading only their chunks), so ``load`` works on DCP versions too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import torch

from casstore.errors import CorruptObjectError, NotFoundError
from casstore.repo.catalog import Version
from casstore.repo.chunks import ChunkReader
from casstore.repo.files import VersionFile
from casstore.torch._reading import TensorIndex

DCP_METADATA = "dcp-metadata.json"
FORMAT = "casstore-dcp/1"
MAX_METADATA = 256 << 20


def read_document(chunks: ChunkReader, version: Version) -> dict[str, Any]:
    """The checkpoint's metadata document (verified bytes, JSON)."""
    try:
        entry = version.manifest.file(DCP_METADATA)
    except NotFoundError:
        raise NotFoundError(
            f"{version.name} is not a distributed checkpoint (no {DCP_METADATA})"
        ) from None
    if entry.size > MAX_METADATA:
        raise CorruptObjectError(f"{DCP_METADATA} of {entry.size} bytes is too large")
    raw = VersionFile(chunks, version.manifest, entry).read_range(0, entry.size)
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise CorruptObjectError(f"{DCP_METADATA} is not JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CorruptObjectError(f"{DCP_METADATA}: unknown format")
    return doc


class DcpIndex:
    """The tensors of a distributed checkpoint, by fully qualified name, as whole tensors."""

    def __init__(self, chunks: ChunkReader, version: Version) -> None:
        self.version = version
        doc = read_document(chunks, version)
        self.pieces = TensorIndex(chunks, version)  # the rank files
        try:
            self.tensors = {
                fqn: (_dtype(m["dtype"]), tuple(int(d) for d in m["size"]))
                for fqn, m in doc["state_dict"].items()
                if m["kind"] == "tensor"
            }
            self.parts: dict[str, list[tuple[tuple[int, ...], str]]] = {}
            for s in doc["storage"]:
                if s["fqn"] in self.tensors:
                    offsets = tuple(int(o) for o in s["offset"])
                    self.parts.setdefault(s["fqn"], []).append((offsets, str(s["name"])))
        except (KeyError, TypeError, ValueError) as e:
            raise CorruptObjectError(f"{DCP_METADATA} is unreadable: {e}") from None

    @property
    def names(self) -> list[str]:
        return sorted(self.tensors)

    def read(self, names: Iterable[str]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for fqn in names:
            if fqn not in self.tensors:
                raise NotFoundError(
                    f"{self.version.name} has no tensor {fqn!r} (objects of a distributed "
                    "checkpoint load through dcp.load with CasstoreStorageReader)"
                )
            dtype, size = self.tensors[fqn]
            full = torch.empty(size, dtype=dtype)
            parts = self.parts.get(fqn, [])
            stored = self.pieces.read([name for _, name in parts])
            covered = 0
            for offsets, name in parts:
                piece = stored[name]
                if piece.dtype != dtype or len(offsets) != len(size):
                    raise CorruptObjectError(f"{fqn}: piece {name!r} does not fit the tensor")
                where = tuple(slice(o, o + n) for o, n in zip(offsets, piece.shape))
                full[where].copy_(piece)
                covered += piece.numel()
            if covered != full.numel():
                raise CorruptObjectError(f"{fqn}: stored pieces cover {covered} of {full.numel()}")
            out[fqn] = full
        return out


def _dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}")
    return dtype


def open_index(
    chunks: ChunkReader, version: Version, path: str | None, allow_globals: Iterable[str] = ()
) -> TensorIndex | DcpIndex:
    """The tensor index of a version: assembled whole tensors for a distributed checkpoint
    (unless ``path`` picks files), else the tensors of its safetensors or torch files
    (``allow_globals``: extra pickle globals, as inert stubs)."""
    if path is None and any(f.path == DCP_METADATA for f in version.manifest.files):
        return DcpIndex(chunks, version)
    return TensorIndex(chunks, version, path, allow_globals)
