"""Parse a ``torch.save`` zip archive into tensor payload ranges, without torch.

The archive holds ``<prefix>/data.pkl`` (the object, with storages as persistent ids) and one
STORED entry ``<prefix>/data/<key>`` per storage. The central directory comes from stdlib
zipfile; each payload offset comes from its local header (30 + name + extra bytes).
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

from casstore.chunking.base import (
    MAX_WINDOW,
    TORCH_ZIP,
    FileLayout,
    ReadAt,
    SeekableReader,
    TensorInfo,
    describe,
    read_exact,
)
from casstore.chunking.dtypes import TORCH_DTYPES
from casstore.chunking.torch_pickle import (
    TensorStub,
    load_torch_pickle,
    named_tensors,
    tensor_dtype,
)
from casstore.errors import InvalidInputError

ZIP_MAGIC = b"PK\x03\x04"
MAX_DIRECTORY = 64 << 20
"""Largest zip central directory read (about half a million entries)."""

_LOCAL = struct.Struct("<4s2B4HL2L2H")  # the 30-byte local file header
_HEADER_SPAN = 64 << 10  # local headers closer than this are read together


class NotTorchZip(InvalidInputError):
    """A valid zip that is not a torch archive (no ``<prefix>/data.pkl``)."""


class UnreadableZip(InvalidInputError):
    """The zip central directory cannot be read (truncated or not a zip)."""


@dataclass(frozen=True)
class ZipEntry:
    """One member of the archive and where its bytes are."""

    name: str
    header: int  # offset of the local header
    start: int  # offset of the payload
    size: int  # stored bytes
    stored: bool  # uncompressed (and so directly addressable)


@dataclass(frozen=True)
class TorchArchive:
    """A parsed ``torch.save`` archive: its members and its object graph, in which every
    tensor is a :class:`TensorStub` (read by the restricted unpickler: nothing was run)."""

    prefix: str
    entries: dict[str, ZipEntry]
    obj: Any
    filename: str = ""

    def tensors(self) -> Iterator[tuple[str, TensorStub, ZipEntry]]:
        """``(dotted name, stub, the storage member holding its bytes)`` for every tensor."""
        for name, stub in named_tensors(self.obj):
            entry = self.entries.get(f"{self.prefix}/data/{stub.storage.key}")
            if entry is None:
                raise InvalidInputError(
                    f"{describe(self.filename)}: tensor {name!r}: storage "
                    f"{stub.storage.key!r} is missing"
                )
            yield name, stub, entry


def read_torch_archive(
    read_at: ReadAt, size: int, filename: str = "", allow: Collection[str] = ()
) -> TorchArchive:
    """Parse the zip directory, every member's offsets and ``data.pkl`` (restricted: a pickle
    that would import or call code raises UnsafePickleError). InvalidInputError for a corrupt
    or lying archive; NotTorchZip / UnreadableZip when it is not a torch archive at all.
    ``allow`` names extra globals the pickle may use, as inert stubs."""
    where = describe(filename)
    infos, directory_start = _directory(read_at, size, filename)
    prefix = infos[0].filename.split("/", 1)[0]
    if not any(i.filename == f"{prefix}/data.pkl" for i in infos):
        raise NotTorchZip(f"{where}: zip archive has no {prefix}/data.pkl (not a torch file)")
    entries = _entries(read_at, size, infos, directory_start, filename)
    pkl = entries[f"{prefix}/data.pkl"]
    if not pkl.stored:
        raise InvalidInputError(f"{where}: {pkl.name} is compressed; torch writes it stored")
    obj, _ = load_torch_pickle(read_at, pkl.start, pkl.start + pkl.size, filename, allow)
    return TorchArchive(prefix, entries, obj, filename)


def parse_torch_zip(
    read_at: ReadAt, size: int, filename: str = "", allow: Collection[str] = ()
) -> FileLayout:
    """The layout of a torch zip archive; InvalidInputError for a corrupt or lying one."""
    archive = read_torch_archive(read_at, size, filename, allow)
    where = describe(filename)
    tensors = []
    for name, stub, entry in archive.tensors():
        info = _tensor_info(name, stub, entry, where)
        if info is not None:
            tensors.append(info)
    tensors.sort(key=lambda t: (t.offset, t.length, t.name))
    return FileLayout(TORCH_ZIP, tuple(tensors), {})


def _tensor_info(name: str, stub: TensorStub, entry: ZipEntry, where: str) -> TensorInfo | None:
    if not entry.stored:
        raise InvalidInputError(f"{where}: storage {entry.name} is compressed; it must be stored")
    storage_dtype = TORCH_DTYPES.get(stub.storage.dtype)
    if storage_dtype is None or stub.storage.numel * storage_dtype[1] != entry.size:
        raise InvalidInputError(
            f"{where}: storage {entry.name} holds {entry.size} bytes, not "
            f"{stub.storage.numel} x {stub.storage.dtype}"
        )
    dtype = tensor_dtype(stub)
    if dtype is None or not stub.is_contiguous():
        return None  # not one contiguous byte range of a known element size: not listed
    st_name, itemsize = dtype
    offset, length = stub.offset * itemsize, stub.numel * itemsize
    if offset + length > entry.size:
        raise InvalidInputError(f"{where}: tensor {name!r} runs past the end of {entry.name}")
    return TensorInfo(name, st_name, stub.shape, entry.start + offset, length)


def _directory(read_at: ReadAt, size: int, filename: str) -> tuple[list[zipfile.ZipInfo], int]:
    where = describe(filename)
    try:
        with zipfile.ZipFile(_ReadAtFile(read_at, size, filename)) as zf:
            infos, start = zf.infolist(), zf.start_dir
    except InvalidInputError:
        raise
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        NotImplementedError,  # "zip file version 12.7"
        EOFError,
        ValueError,
        struct.error,
        OverflowError,
        LookupError,
    ) as e:  # not OSError: a failing read_at is not a corrupt file
        raise UnreadableZip(f"{where}: corrupt zip archive: {e}") from None
    if not infos:
        raise UnreadableZip(f"{where}: zip archive has no entries")
    return infos, start


def _entries(
    read_at: ReadAt, size: int, infos: list[zipfile.ZipInfo], directory_start: int, filename: str
) -> dict[str, ZipEntry]:
    """Every entry with its payload offset, checked to lie inside the file without overlap."""
    where = describe(filename)
    ordered = sorted(infos, key=lambda i: i.header_offset)
    entries: dict[str, ZipEntry] = {}
    window, window_start = b"", 0
    previous_end = 0
    for k, info in enumerate(ordered):
        h = info.header_offset
        if h < previous_end or h + _LOCAL.size > size:
            raise InvalidInputError(f"{where}: zip entry {info.filename!r} has a bad offset {h}")
        if not window_start <= h or h + _LOCAL.size > window_start + len(window):
            window_start = h
            window = _read_headers(read_at, size, ordered, k, filename)
        rel = h - window_start
        fields = _LOCAL.unpack_from(window, rel)
        magic, flags, name_len, extra_len = fields[0], fields[3], fields[10], fields[11]
        if magic != ZIP_MAGIC:
            raise InvalidInputError(f"{where}: zip entry {info.filename!r}: no local header at {h}")
        end_name = rel + _LOCAL.size + name_len
        if end_name > len(window):
            window_start = h
            window = read_exact(read_at, h, min(size - h, _LOCAL.size + name_len), filename)
            rel, end_name = 0, _LOCAL.size + name_len
        _check_name(window[rel + _LOCAL.size : end_name], info, flags, where)
        start = h + _LOCAL.size + name_len + extra_len
        end = start + info.compress_size
        if info.flag_bits & 1:
            raise InvalidInputError(f"{where}: zip entry {info.filename!r} is encrypted")
        if end > size or end > directory_start:
            raise InvalidInputError(
                f"{where}: zip entry {info.filename!r} runs past the end of the data "
                f"({end} > {min(size, directory_start)}; truncated file?)"
            )
        stored = info.compress_type == zipfile.ZIP_STORED and info.compress_size == info.file_size
        if info.filename in entries:
            raise InvalidInputError(f"{where}: zip entry {info.filename!r} appears twice")
        entries[info.filename] = ZipEntry(info.filename, h, start, info.compress_size, stored)
        previous_end = end
    return entries


def _read_headers(
    read_at: ReadAt, size: int, ordered: list[zipfile.ZipInfo], k: int, filename: str
) -> bytes:
    """One read covering the local header of entry ``k`` and of any close followers."""
    first = ordered[k].header_offset
    last = k
    while last + 1 < len(ordered) and ordered[last + 1].header_offset - first < _HEADER_SPAN:
        last += 1
    end = ordered[last].header_offset + _LOCAL.size + 4 * len(ordered[last].orig_filename)
    return read_exact(read_at, first, min(size, end) - first, filename)


def _check_name(raw: bytes, info: zipfile.ZipInfo, flags: int, where: str) -> None:
    try:
        name = raw.decode("utf-8" if flags & 0x800 else "cp437")
    except UnicodeDecodeError:
        name = None
    if name != info.orig_filename:
        raise InvalidInputError(
            f"{where}: zip local header name {raw!r} differs from directory name "
            f"{info.orig_filename!r}"
        )


class _ReadAtFile(SeekableReader):
    """A read-only, seekable file over ``read_at``, for zipfile's directory parsing."""

    def __init__(self, read_at: ReadAt, size: int, filename: str):
        super().__init__()
        self._read_at, self._size, self._pos, self._filename = read_at, size, 0, filename

    @property
    def size(self) -> int:
        return self._size

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            n = self._size - self._pos
        n = max(0, min(n, self._size - self._pos))
        if n > MAX_DIRECTORY:
            raise InvalidInputError(
                f"{describe(self._filename)}: zip directory read of {n} bytes exceeds "
                f"{MAX_DIRECTORY}"
            )
        data = b"".join(
            read_exact(self._read_at, self._pos + p, min(MAX_WINDOW, n - p), self._filename)
            for p in range(0, n, MAX_WINDOW)
        )
        self._pos += n
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
