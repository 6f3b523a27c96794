"""Reading versions back: a seekable, verified view of one file (checkout: repo/checkout.py)."""

from __future__ import annotations

import bisect

from casstore.chunking.base import SeekableReader
from casstore.digest import Digest
from casstore.errors import CasstoreError, CorruptObjectError, NotFoundError
from casstore.repo.chunks import ChunkReader
from casstore.repo.manifest import FileEntry, Manifest


def _context(e: CasstoreError, manifest: Manifest, entry: FileEntry) -> CasstoreError:
    msg = f"version {manifest.name}, file {entry.path}: {e}"
    return type(e)(msg)


class VersionFile(SeekableReader):
    """A read-only, seekable view of one file of a version. Reads only the chunks it needs,
    and verifies each one's digest before returning any of its bytes."""

    def __init__(self, reader: ChunkReader, manifest: Manifest, entry: FileEntry) -> None:
        self._reader = reader
        self._manifest = manifest
        self.entry = entry
        self._chunks = entry.chunk_offsets()
        self._starts = [off for _, off, _ in self._chunks]
        self._pos = 0
        self._cache: tuple[int, memoryview] | None = None  # (chunk index, payload)

    @property
    def size(self) -> int:
        return self.entry.size

    def _chunk(self, index: int) -> memoryview:
        if self._cache is not None and self._cache[0] == index:
            return self._cache[1]
        digest, _, size = self._chunks[index]
        try:
            data = self._reader.read(digest, size)
        except (NotFoundError, CorruptObjectError) as e:
            raise _context(e, self._manifest, self.entry) from e
        self._cache = (index, data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        out = memoryview(buffer).cast("B")
        n = self.pread_into(out, self._pos)
        self._pos += n
        return n

    def pread_into(self, out: memoryview, offset: int) -> int:
        """Fill ``out`` from ``offset``; returns the bytes copied (short only at end of file)."""
        want = min(len(out), max(0, self.size - offset))
        done = 0
        while done < want:
            pos = offset + done
            i = bisect.bisect_right(self._starts, pos) - 1
            _, start, length = self._chunks[i]
            data = self._chunk(i)
            take = min(want - done, start + length - pos)
            if take <= 0 or len(data) != length:  # the manifest validator makes this unreachable
                raise CorruptObjectError(f"version {self._manifest.name}, file "
                                         f"{self.entry.path}: chunk sizes do not add up")
            out[done : done + take] = data[pos - start : pos - start + take]
            done += take
        return done

    def read_range(self, start: int, end: int) -> bytes:
        buf = bytearray(max(0, min(end, self.size) - start))
        self.pread_into(memoryview(buf), start)
        return bytes(buf)

    def chunks_for_range(self, start: int, end: int) -> list[Digest]:
        """The chunks that cover bytes [start, end)."""
        if end <= start:
            return []
        i = bisect.bisect_right(self._starts, start) - 1
        j = bisect.bisect_left(self._starts, end)
        return [d for d, _, _ in self._chunks[max(i, 0) : j]]
