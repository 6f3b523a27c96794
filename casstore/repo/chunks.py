"""Chunk objects: their on-store encoding, the deduplicating write path, the verified read path.

A chunk object is a 4-byte magic ``CSC`` + format byte, one encoding byte, then the payload.
The chunk's name is the blake3 digest of its *decoded* bytes, so a later compressed encoding
stores the same chunk under the same name without a format break. Every read decodes and
re-hashes; a mismatch is a :class:`CorruptObjectError`, never wrong bytes.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from casstore.chunking import Chunker, FileLayout, ReadAt
from casstore.digest import Digest
from casstore.errors import CorruptObjectError, NotFoundError
from casstore.repo.keys import chunk_key
from casstore.repo.manifest import INLINE_MAX, Manifest
from casstore.store.base import ObjectStore, Parts

MAGIC = b"CSC\x01"
ENC_RAW = 0
HEADER_SIZE = len(MAGIC) + 1
ENCODINGS = {ENC_RAW: "raw"}

Progress = Callable[[int], None]  # called with a number of bytes just processed


def encode_chunk(payload: bytes | memoryview, encoding: int = ENC_RAW) -> bytes:
    if encoding != ENC_RAW:
        raise ValueError(f"unknown chunk encoding {encoding}")
    return b"".join((MAGIC, bytes((encoding,)), payload))


def chunk_parts(payload: bytes | memoryview, encoding: int = ENC_RAW) -> Parts:
    """The chunk object as header + payload buffers, so a store writes it without a copy."""
    if encoding != ENC_RAW:
        raise ValueError(f"unknown chunk encoding {encoding}")
    return Parts(MAGIC + bytes((encoding,)), payload)


def decode_chunk(raw: bytes, digest: Digest) -> memoryview:
    """Payload of a stored chunk object, verified against ``digest``."""
    if len(raw) < HEADER_SIZE or raw[:4] != MAGIC:
        raise CorruptObjectError(f"chunk {digest.short()}: bad header")
    enc = raw[4]
    if enc != ENC_RAW:
        raise CorruptObjectError(f"chunk {digest.short()}: unknown encoding {enc}")
    payload = memoryview(raw)[HEADER_SIZE:]
    if Digest.of(payload) != digest:
        raise CorruptObjectError(f"chunk {digest.short()}: content does not match its digest")
    return payload


@dataclass
class WriteStats:
    """What one write session did."""

    logical_bytes: int = 0
    chunks: int = 0
    new_chunks: int = 0
    new_bytes: int = 0  # payload bytes actually written

    def add(self, size: int, new: bool) -> None:
        self.chunks += 1
        self.logical_bytes += size
        if new:
            self.new_chunks += 1
            self.new_bytes += size


class ChunkWriter:
    """Hashes pieces, skips chunks the store already has, writes the rest, in parallel.

    Reading happens in the caller's thread (the chunker pulls from ``read_at``); hashing and
    writing run in a small pool (blake3 and file I/O release the GIL), so the three overlap.
    At most ``max_inflight`` payload bytes are held at once: memory does not grow with file size.
    ``known`` seeds the set of digests known to be present (e.g. the parent version's chunks),
    saving existence checks against a remote store.
    """

    def __init__(
        self,
        store: ObjectStore,
        *,
        known: Iterable[Digest] = (),
        workers: int = 3,
        max_inflight: int = 64 << 20,
        progress: Progress | None = None,
        inline_max: int = INLINE_MAX,
    ) -> None:
        self.store = store
        self.stats = WriteStats()
        self._present: set[Digest] = set(known)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="casstore-write")
        self._budget = threading.Condition()
        self._inflight = 0
        self._max_inflight = max_inflight
        self._progress = progress
        self._lock = threading.Lock()
        self.inline_max = inline_max
        self.inline: dict[Digest, bytes] = {}  # tiny chunks to keep in the manifest

    def add_file(
        self,
        chunker: Chunker,
        read_at: ReadAt,
        size: int,
        filename: str = "",
        *,
        view_at: ReadAt | None = None,
    ) -> tuple[FileLayout, list[tuple[Digest, int]]]:
        """Chunk, hash and store one file; returns its layout and ordered (digest, size).
        ``view_at`` serves piece data without copying (e.g. from a memory map)."""
        layout, pieces = chunker.split(read_at, size, filename, view_at=view_at)
        futures: deque[Future[tuple[Digest, int]]] = deque()
        out: list[tuple[Digest, int]] = []
        try:
            for piece in pieces:
                n = len(piece)
                self._acquire(n)
                futures.append(self._pool.submit(self._store_piece, piece, n))
                while futures and futures[0].done():
                    out.append(futures.popleft().result())
        finally:
            for f in futures:  # drain, raising the first error
                out.append(f.result())
        return layout, out

    def _acquire(self, n: int) -> None:
        with self._budget:
            while self._inflight > 0 and self._inflight + n > self._max_inflight:
                self._budget.wait()
            self._inflight += n

    def _release(self, n: int) -> None:
        with self._budget:
            self._inflight -= n
            self._budget.notify_all()

    def _store_piece(self, piece: memoryview, n: int) -> tuple[Digest, int]:
        try:
            d = Digest.of(piece)
            new = False
            if n <= self.inline_max:
                with self._lock:
                    self.inline.setdefault(d, bytes(piece))
            elif d not in self._present:
                key = chunk_key(d)
                if not self.store.exists(key):
                    new = self.store.put_if_absent(key, chunk_parts(piece), sync=False)
                self._present.add(d)
            with self._lock:
                self.stats.add(n, new)
            if self._progress is not None:
                self._progress(n)
            return d, n
        finally:
            self._release(n)

    def close(self) -> None:
        """Wait for every write and make them durable."""
        self._pool.shutdown(wait=True)
        self.store.flush()

    def abort(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class ChunkReader:
    """Verified reads of chunks, with bounded read-ahead for sequential streams.

    Tiny chunks stored inline in manifests are served from memory once a manifest holding
    them has been seen (:meth:`remember_inline`); they were verified with their manifest.
    """

    def __init__(self, store: ObjectStore, *, workers: int | None = None) -> None:
        self.store = store
        self._workers = workers or max(2, min(8, store.capabilities.concurrent_io))
        self._inline: dict[Digest, memoryview] = {}

    def remember_inline(self, manifest: Manifest) -> None:
        for f in manifest.files:
            for d, data in f.inline.items():
                digest = Digest(d)
                if digest not in self._inline:
                    if Digest.of(data) != digest:
                        raise CorruptObjectError(
                            f"version {manifest.name}: inline chunk {digest.short()} of "
                            f"{f.path} does not match its digest"
                        )
                    self._inline[digest] = memoryview(data)

    def read(self, digest: Digest) -> memoryview:
        inline = self._inline.get(digest)
        if inline is not None:
            return inline
        try:
            raw = self.store.get(chunk_key(digest))
        except NotFoundError:
            raise NotFoundError(f"chunk {digest.short()} is missing from the store") from None
        return decode_chunk(raw, digest)

    def stream(self, digests: Iterable[Digest], *, ahead: int = 4) -> Iterator[memoryview]:
        """Verified payloads in order, reading up to ``ahead`` chunks in parallel."""
        it = iter(digests)
        with ThreadPoolExecutor(self._workers, thread_name_prefix="casstore-read") as pool:
            window: deque[Future[memoryview]] = deque()
            for d in it:
                window.append(pool.submit(self.read, d))
                if len(window) >= ahead:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()
