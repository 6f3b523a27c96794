"""Which tensors a version holds and where their bytes are, and reading just those bytes.

A :class:`TensorIndex` is built from a version's manifest: safetensors files from their parsed
layout (sharded checkpoints through their ``*.safetensors.index.json``), torch zip files by
re-parsing their pickle with casstore's restricted unpickler (never Python's). Reading fetches
only the chunks that cover the requested byte ranges, each verified against its digest, and
copies them straight into the tensors' memory.
"""

from __future__ import annotations

import bisect
import io
import json
import math
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from casstore.chunking import detect_layout
from casstore.chunking.base import SAFETENSORS, TORCH_PICKLE, TORCH_ZIP
from casstore.chunking.detect import TORCH_SUFFIXES
from casstore.chunking.torch_pickle import recorded_allow
from casstore.chunking.torch_zip import ZIP_MAGIC, read_torch_archive
from casstore.errors import CorruptObjectError, InvalidInputError, NotFoundError
from casstore.repo.catalog import Version
from casstore.repo.chunks import ChunkReader
from casstore.repo.files import VersionFile
from casstore.repo.manifest import FileEntry
from casstore.torch._common import dtype_by_torch_name, empty_bytes, itemsize, torch_dtype

TIED_KEY = "casstore.tied"
"""safetensors ``__metadata__`` key: JSON ``{alias: name}`` of tensors that shared memory."""

INDEX_SUFFIX = ".safetensors.index.json"
TRAINING_STATE_DIR = "training-state/"
"""Where a checkpoint keeps optimizer/scheduler state: not part of the version's weights."""
MAX_INDEX = 64 << 20


@dataclass(frozen=True)
class Slot:
    """Where one stored tensor's bytes are in a file of the version, and how to view them."""

    path: str
    group: str | None  # slots of one group share their bytes (views of one .pt storage)
    start: int
    nbytes: int
    dtype: torch.dtype
    shape: tuple[int, ...]
    stride: tuple[int, ...] | None  # None: contiguous


def read_ranges(
    chunks: ChunkReader, entry: FileEntry, ranges: list[tuple[int, memoryview]], ahead: int = 8
) -> None:
    """Fill each ``(file offset, destination)`` from the file's chunks. Only the chunks that
    cover a range are fetched, each once, in file order with read-ahead, and verified."""
    table = entry.chunk_offsets()
    starts = [off for _, off, _ in table]
    spans = sorted((off, off + len(dst), dst) for off, dst in ranges if len(dst))
    if spans and spans[-1][1] > entry.size:
        raise CorruptObjectError(f"{entry.path}: tensor bytes run past the end of the file")
    need: set[int] = set()
    for a, b, _ in spans:
        need.update(range(bisect.bisect_right(starts, a) - 1, bisect.bisect_left(starts, b)))
    order = sorted(need)
    lo = 0
    for i, payload in zip(order, chunks.stream([table[i][0] for i in order], ahead=ahead)):
        cs = starts[i]
        ce = cs + len(payload)
        while lo < len(spans) and spans[lo][1] <= cs:
            lo += 1
        j = lo
        while j < len(spans) and spans[j][0] < ce:
            a, b, dst = spans[j]
            if b > cs:
                x, y = max(a, cs), min(b, ce)
                dst[x - a : y - a] = payload[x - cs : y - cs]
            j += 1


class TensorIndex:
    """The tensors of one version (or of the files under ``path`` in it), by name."""

    def __init__(
        self,
        chunks: ChunkReader,
        version: Version,
        path: str | None = None,
        allow_globals: Iterable[str] = (),
    ) -> None:
        self.chunks = chunks
        self.allow = tuple(allow_globals)
        self.version = version
        self.slots: dict[str, Slot] = {}
        self.aliases: dict[str, str] = {}  # tied name -> the name whose bytes it shares
        self.eager: dict[str, torch.Tensor] = {}  # legacy torch.save files, loaded whole
        self._where: dict[str, str] = {}
        self._files = {f.path: f for f in version.manifest.files}
        files, weight_map = self._select(path)
        for f in files:
            if _is_safetensors(f):
                self._add_safetensors(f, weight_map)
            else:
                self._add_torch(f)
        for alias, name in list(self.aliases.items()):
            a, b = self.slots.get(alias), self.slots.get(name)
            if a is None or b is None or (a.dtype, a.shape) != (b.dtype, b.shape):
                del self.aliases[alias]  # not both in this selection, or not alike: no tie

    @property
    def names(self) -> list[str]:
        return sorted(self._where)

    # -- building ------------------------------------------------------------------------
    def _select(self, path: str | None) -> tuple[list[FileEntry], dict[str, str] | None]:
        files = list(self.version.manifest.files)
        if path is not None:
            root = path.rstrip("/") + "/"
            files = [f for f in files if f.path == path or f.path.startswith(root)]
            if not files:
                raise NotFoundError(f"{self.version.name} has no file or folder {path!r}")
        else:  # the weights: a training checkpoint's optimizer state is read only by name
            files = [f for f in files if not f.path.startswith(TRAINING_STATE_DIR)]
        indexes = [f for f in files if f.path.endswith(INDEX_SUFFIX)]
        if indexes:
            weight_map: dict[str, str] = {}
            for f in indexes:
                for name, shard in self._weight_map(f).items():
                    self._claim(weight_map, name, shard, f.path)
            shards = sorted(set(weight_map.values()))
            missing = [s for s in shards if s not in self._files]
            if missing:
                raise CorruptObjectError(f"{self.version.name}: index names missing {missing[0]}")
            return [self._files[s] for s in shards], weight_map
        chosen = [f for f in files if _is_safetensors(f)] or [f for f in files if _is_torch(f)]
        if not chosen:
            raise NotFoundError(f"{self.version.name} holds no safetensors or torch file")
        return chosen, None

    def _weight_map(self, f: FileEntry) -> dict[str, str]:
        if f.size > MAX_INDEX:
            raise InvalidInputError(f"{f.path}: index of {f.size} bytes is too large")
        raw = VersionFile(self.chunks, self.version.manifest, f).read_range(0, f.size)
        try:
            wm = json.loads(raw)["weight_map"]
            folder = posixpath.dirname(f.path)
            return {str(k): posixpath.join(folder, str(v)) for k, v in dict(wm).items()}
        except (ValueError, KeyError, TypeError) as e:
            raise CorruptObjectError(f"{f.path}: not a safetensors index ({e})") from None

    def _claim(self, table: dict[str, str], name: str, path: str, where: str) -> None:
        other = table.get(name)
        if other is not None and other != path:
            raise InvalidInputError(
                f"tensor {name!r} is in both {other} and {path} ({where}); pass path= to choose"
            )
        table[name] = path

    def _add(self, name: str, slot: Slot) -> None:
        self._claim(self._where, name, slot.path, self.version.name)
        self.slots[name] = slot

    def _add_safetensors(self, f: FileEntry, weight_map: dict[str, str] | None) -> None:
        if f.format != SAFETENSORS:
            raise CorruptObjectError(f"{f.path} was not stored as a safetensors file")
        for t in f.tensors:
            if weight_map is not None and weight_map.get(t.name) != f.path:
                continue
            dtype = torch_dtype(t.dtype, f"{f.path}: {t.name}")
            if math.prod(t.shape) * itemsize(t.dtype) != t.length:
                raise CorruptObjectError(f"{f.path}: {t.name}: size does not match its shape")
            self._add(t.name, Slot(f.path, None, t.offset, t.length, dtype, t.shape, None))
        if weight_map is not None:
            absent = [n for n, p in weight_map.items() if p == f.path and n not in self.slots]
            if absent:
                raise CorruptObjectError(f"{f.path} lacks {absent[0]!r} named by its index")
        tied = f.metadata.get(TIED_KEY)
        if tied:
            try:
                self.aliases.update({str(a): str(n) for a, n in json.loads(tied).items()})
            except (ValueError, AttributeError) as e:
                raise CorruptObjectError(f"{f.path}: bad {TIED_KEY} metadata: {e}") from None

    def _add_torch(self, f: FileEntry) -> None:
        vf = VersionFile(self.chunks, self.version.manifest, f)

        def read_at(offset: int, n: int) -> bytes:
            return vf.read_range(offset, offset + n)

        # The commit-time checks again, on verified bytes: a pickle that would import or call
        # code raises UnsafePickleError before anything is built from it.
        if f.size >= len(ZIP_MAGIC) and read_at(0, len(ZIP_MAGIC)) == ZIP_MAGIC:
            self._add_torch_zip(f, read_at)
            return
        layout = detect_layout(read_at, f.size, f.path, self._allow(f))
        if layout.format != TORCH_PICKLE:
            raise InvalidInputError(f"{f.path} is not a torch file (found {layout.format})")
        data = io.BytesIO(read_at(0, f.size))  # legacy format: torch's own weights_only loader
        obj = torch.load(data, map_location="cpu", weights_only=True)
        for name, t in _named(obj):
            self._claim(self._where, name, f.path, self.version.name)
            self.eager[name] = t

    def _allow(self, f: FileEntry) -> tuple[str, ...]:
        """The globals the file was committed with, and any the caller allows."""
        return (*recorded_allow(f.metadata), *self.allow)

    def _add_torch_zip(self, f: FileEntry, read_at) -> None:
        archive = read_torch_archive(read_at, f.size, f.path, self._allow(f))
        for name, stub, storage in archive.tensors():
            where = f"{f.path}: {name}"
            dtype, size = dtype_by_torch_name(stub.dtype, where)
            if any(s < 0 for s in stub.stride):
                raise InvalidInputError(f"{where}: negative strides")
            numel = math.prod(stub.shape)
            span = sum((d - 1) * s for d, s in zip(stub.shape, stub.stride))
            extent = 0 if numel == 0 else 1 + span
            begin, nbytes = stub.offset * size, extent * size
            if begin + nbytes > storage.size:
                raise CorruptObjectError(f"{where}: view runs past its storage")
            group = f"{f.path}\0{stub.storage.key}"
            start = storage.start + begin
            self._add(name, Slot(f.path, group, start, nbytes, dtype, stub.shape, stub.stride))

    # -- reading -------------------------------------------------------------------------
    def read(self, names: Iterable[str]) -> dict[str, torch.Tensor]:
        """The named tensors (CPU), reading only their bytes; tied names share one tensor."""
        names = list(names)
        unknown = [n for n in names if n not in self._where]
        if unknown:
            raise NotFoundError(
                f"{self.version.name} has no tensor {unknown[0]!r}"
                + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
            )
        wanted = {self.aliases.get(n, n) for n in names} - set(self.eager)
        built: dict[str, torch.Tensor] = dict(self.eager)
        by_file: dict[str, dict[str, list[tuple[str, Slot]]]] = {}
        for n in sorted(wanted):
            s = self.slots[n]
            by_file.setdefault(s.path, {}).setdefault(s.group or f"\1{n}", []).append((n, s))
        for path, groups in by_file.items():
            requests: list[tuple[int, memoryview]] = []
            pending = []
            for members in groups.values():
                start = min(s.start for _, s in members)
                end = max(s.start + s.nbytes for _, s in members)
                buf, view = empty_bytes(end - start)
                requests.append((start, view))
                pending.append((buf, start, members))
            read_ranges(self.chunks, self._files[path], requests)
            for buf, start, members in pending:
                for n, s in members:
                    built[n] = _view(buf, s.start - start, s)
        return {n: built[self.aliases.get(n, n)] for n in names}


def _view(buf: torch.Tensor, rel: int, s: Slot) -> torch.Tensor:
    x = buf[rel : rel + s.nbytes].view(s.dtype)
    if s.stride is None:
        return x.reshape(s.shape)
    return x.as_strided(s.shape, s.stride)


def _is_safetensors(f: FileEntry) -> bool:
    return f.format == SAFETENSORS or f.path.lower().endswith(".safetensors")


def _is_torch(f: FileEntry) -> bool:
    return f.format in (TORCH_ZIP, TORCH_PICKLE) or f.path.lower().endswith(TORCH_SUFFIXES)


def _named(obj: object, prefix: str = "") -> list[tuple[str, torch.Tensor]]:
    """Tensors in nested dicts/lists of a ``torch.load`` result, with dotted key paths."""
    if isinstance(obj, torch.Tensor):
        return [(prefix, obj)]
    if isinstance(obj, dict):
        items = [(str(k), v) for k, v in obj.items() if isinstance(k, (str, int))]
    elif isinstance(obj, (list, tuple)):
        items = [(str(i), v) for i, v in enumerate(obj)]
    else:
        return []
    out = []
    for k, v in items:
        out.extend(_named(v, f"{prefix}.{k}" if prefix else k))
    return out
