"""Chunk objects: their on-store encoding, the deduplicating write path, the verified read path.

A chunk object is a 4-byte magic ``CSC`` + format byte, one encoding byte, then (for encoded
objects) the decoded size and, for deltas, the chain of base chunks, then the payload (see
:class:`ChunkHeader`). The chunk's name is the blake3 digest of its *decoded* bytes, so the
same chunk has the same name however it is stored, and raw objects written before encodings
existed read unchanged. Every read decodes and re-hashes; a mismatch is a
:class:`CorruptObjectError`, never wrong bytes.
"""

from __future__ import annotations

import contextlib
import struct
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, overload

from casstore.chunking import Chunker, FileLayout, ReadAt
from casstore.chunking import encodings as E
from casstore.chunking.base import MAX_WINDOW, TensorCursor
from casstore.digest import DIGEST_SIZE, Digest, hasher
from casstore.errors import CorruptObjectError, NotFoundError
from casstore.repo.keys import chunk_key
from casstore.repo.manifest import INLINE_MAX, Manifest, verified_inline

if TYPE_CHECKING:  # the thread pools are imported where they start
    from concurrent.futures import Future

    from casstore.repo.deltas import DeltaIndex
from casstore.store.base import ObjectStore, Parts

MAGIC = b"CSC\x01"
ENC_RAW, ENC_ZSTD, ENC_SPLIT, ENC_DELTA = E.RAW, E.ZSTD, E.SPLIT, E.DELTA
HEADER_SIZE = len(MAGIC) + 1
ENCODINGS = dict(E.NAMES)
MAX_DECODED = MAX_WINDOW
"""No chunk decodes to more than this (chunkers never cut bigger pieces); a hostile object
declaring more is refused before anything is allocated."""
MAX_CHAIN = 16
"""Hard bound on delta chain length when reading (policies stay far below it)."""
_SIZE = struct.Struct("<I")
_DELTA = struct.Struct("<IBB")  # decoded size, inner encoding, chain length
HEAD_READ = HEADER_SIZE + _DELTA.size + MAX_CHAIN * DIGEST_SIZE
"""A ranged read of this many bytes always holds a chunk object's whole header."""

Progress = Callable[[int], None]  # called with a number of bytes just processed


@dataclass(frozen=True)
class ChunkHeader:
    """What a chunk object's header says.

    Object layout (``size`` = decoded bytes, little-endian u32)::

        raw    MAGIC 00 | payload
        zstd   MAGIC 01 | size | zstd frame
        split  MAGIC 02 | size | split streams (see casstore.chunking.encodings)
        delta  MAGIC 03 | size | inner encoding (u8) | n (u8) | n base digests | inner payload

    A delta's ``chain`` lists its base first, then the base's base and so on, so one header
    read tells every chunk the object needs (GC, transfer order, verify).
    """

    encoding: int
    size: int | None  # None for raw (the payload length is the size)
    inner: int  # for deltas: how the XOR with the base is coded; else == encoding
    chain: tuple[Digest, ...]  # delta bases, nearest first; () if not a delta
    offset: int  # where the payload starts in the object

    @property
    def is_delta(self) -> bool:
        return bool(self.chain)


def parse_header(raw: bytes | memoryview, digest: Digest | None = None) -> ChunkHeader:
    """Parse a chunk object's header (``raw`` may be just its first ``HEAD_READ`` bytes)."""
    name = f"chunk {digest.short()}" if digest is not None else "chunk"
    if len(raw) < HEADER_SIZE or bytes(raw[:4]) != MAGIC:
        raise CorruptObjectError(f"{name}: bad header")
    enc = raw[4]
    if enc == ENC_RAW:
        return ChunkHeader(ENC_RAW, None, ENC_RAW, (), HEADER_SIZE)
    if enc in (ENC_ZSTD, ENC_SPLIT):
        if len(raw) < HEADER_SIZE + _SIZE.size:
            raise CorruptObjectError(f"{name}: truncated header")
        (size,) = _SIZE.unpack_from(raw, HEADER_SIZE)
        return ChunkHeader(enc, size, enc, (), HEADER_SIZE + _SIZE.size)
    if enc == ENC_DELTA:
        if len(raw) < HEADER_SIZE + _DELTA.size:
            raise CorruptObjectError(f"{name}: truncated header")
        size, inner, n = _DELTA.unpack_from(raw, HEADER_SIZE)
        start = HEADER_SIZE + _DELTA.size
        end = start + n * DIGEST_SIZE
        if not 1 <= n <= MAX_CHAIN or inner == ENC_DELTA or inner not in ENCODINGS:
            raise CorruptObjectError(f"{name}: delta header not understood")
        if len(raw) < end:
            raise CorruptObjectError(f"{name}: truncated header")
        chain = tuple(
            Digest(bytes(raw[i : i + DIGEST_SIZE])) for i in range(start, end, DIGEST_SIZE)
        )
        if digest is not None and digest in chain:
            raise CorruptObjectError(f"{name}: delta against itself")
        return ChunkHeader(ENC_DELTA, size, inner, chain, end)
    raise CorruptObjectError(f"{name}: unknown encoding {enc}")


def encoded_parts(encoded: E.Encoded, size: int, chain: Sequence[Digest] = ()) -> Parts:
    """The chunk object for an encoding of ``size`` bytes (``chain``: bases if a delta)."""
    if encoded.delta:
        if not 1 <= len(chain) <= MAX_CHAIN:
            raise ValueError(f"a delta needs 1..{MAX_CHAIN} bases, got {len(chain)}")
        head = b"".join((MAGIC, bytes((ENC_DELTA,)), _DELTA.pack(size, encoded.encoding,
                                                                   len(chain)), *chain))
    elif encoded.encoding == ENC_RAW:
        head = MAGIC + bytes((ENC_RAW,))
    else:
        head = MAGIC + bytes((encoded.encoding,)) + _SIZE.pack(size)
    return Parts(head, *encoded.parts)


def chunk_parts(payload: bytes | memoryview) -> Parts:
    """A raw chunk object as header + payload buffers, so a store writes it without a copy."""
    return Parts(MAGIC + bytes((ENC_RAW,)), payload)


def encode_chunk(payload: bytes | memoryview, encoded: E.Encoded | None = None,
                 chain: Sequence[Digest] = ()) -> bytes:
    """The bytes of a chunk object: raw, or as ``encoded`` (see :func:`encoded_parts`)."""
    if encoded is None:
        return bytes(chunk_parts(payload))
    return bytes(encoded_parts(encoded, len(memoryview(payload).cast("B")), chain))


BaseReader = Callable[[Digest, int, int], memoryview]
"""``read_base(digest, size, depth)``: the verified decoded bytes of a delta's base chunk."""


def decode_chunk(
    raw: bytes | memoryview,
    digest: Digest,
    *,
    size: int | None = None,
    read_base: BaseReader | None = None,
    depth: int = 0,
) -> memoryview:
    """Decoded payload of a stored chunk object, verified against ``digest``.

    ``size`` (what the manifest declares, when known) bounds decoding, else ``MAX_DECODED``
    does. A delta's base is fetched with ``read_base``; without one, a delta is refused.
    """
    h, payload = _framed(raw, digest, size, depth)
    base = None
    if h.is_delta:
        if read_base is None:
            raise CorruptObjectError(f"chunk {digest.short()}: delta, but no base reader")
        assert h.size is not None
        base = read_base(h.chain[0], h.size, depth + 1)
    try:
        data = payload if h.encoding == ENC_RAW else E.decode(h.inner, payload, h.size or 0, base)
    except CorruptObjectError as e:
        raise CorruptObjectError(f"chunk {digest.short()}: {e}") from None
    if size is not None and len(data) != size:
        raise CorruptObjectError(
            f"chunk {digest.short()}: holds {len(data)} bytes, the manifest says {size}"
        )
    if Digest.of(data) != digest:
        raise CorruptObjectError(f"chunk {digest.short()}: content does not match its digest")
    return data


def fetch_object(store: ObjectStore, key: str) -> bytes:
    """A whole chunk object, bytes-like: read through ``get_many``, where a remote backend
    fills one buffer as the body arrives (``get`` returns ``bytes``, joined from the pieces
    at the end: twice the object in memory for a moment)."""
    return store.get_many([key])[key]


def _framed(raw: bytes | memoryview, digest: Digest, size: int | None, depth: int
            ) -> tuple[ChunkHeader, memoryview]:
    """A chunk object's header and payload, its declared size checked against ``size`` (or
    ``MAX_DECODED``) and its chain against ``MAX_CHAIN``, before anything is decoded."""
    h = parse_header(raw, digest)
    if h.size is not None:
        limit = MAX_DECODED if size is None else size
        if h.size > limit or (size is not None and h.size != size):
            raise CorruptObjectError(
                f"chunk {digest.short()}: declares {h.size} bytes, expected "
                f"{size if size is not None else f'at most {limit}'}"
            )
    if h.is_delta and depth + len(h.chain) > MAX_CHAIN:
        raise CorruptObjectError(f"chunk {digest.short()}: delta chain too long (a cycle?)")
    return h, memoryview(raw)[h.offset :]


@dataclass
class WriteStats:
    """What one write session did."""

    logical_bytes: int = 0
    chunks: int = 0
    new_chunks: int = 0
    new_bytes: int = 0  # decoded bytes of the chunks actually written
    stored_bytes: int = 0  # bytes of the chunk objects actually written (after encoding)
    delta_chunks: int = 0  # new chunks stored as deltas
    found_chunks: int = 0  # chunks not known to be present, found already stored
    found_bytes: int = 0  # their decoded bytes
    found_stored: int = 0  # their objects' bytes

    def add(self, size: int, new: bool, stored: int = 0, delta: bool = False,
            found: bool = False) -> None:
        self.chunks += 1
        self.logical_bytes += size
        if new:
            self.new_chunks += 1
            self.new_bytes += size
            self.stored_bytes += stored
            self.delta_chunks += delta
        elif found:
            self.found_chunks += 1
            self.found_bytes += size
            self.found_stored += stored


class ChunkWriter:
    """Hashes pieces, skips chunks the store already has, encodes and writes the rest, in
    parallel.

    Reading happens in the caller's thread (the chunker pulls from ``read_at``); hashing,
    encoding and writing run in a small pool (blake3, numpy, zstd and file I/O release the
    GIL), so they overlap. Memory is bounded by two budgets that together make
    ``max_inflight``: half for the read windows alive (a window is paid for before it is read
    and freed when the last of its pieces is written, whatever its pieces cost), half for what
    encoding needs besides the piece (split streams, the encoded copy, a delta's base), taken
    in the worker just before encoding. One piece may always encode, whatever it needs, when
    no other does, so a piece larger than the budget still goes through (alone). Memory does
    not grow with file size or with the number of threads. ``known`` seeds the set of digests
    known to be present (e.g. the parent version's chunks), saving existence checks against
    a remote store; ``chains`` are the delta chains of those of them stored as deltas (a
    manifest's
    :meth:`~casstore.repo.manifest.Manifest.delta_chains`), so a version that reuses such a
    chunk records the bases it needs and GC keeps them.

    ``policy`` chooses the encodings (off: raw, as stores before encodings). With ``deltas``
    (the parent version's :class:`~casstore.repo.deltas.DeltaIndex`) a chunk of a tensor the
    parent also holds may be stored as a delta against the parent's chunk, read back through
    ``reader``. :meth:`deltas_of` gives the chains to record in the manifest.
    """

    def __init__(
        self,
        store: ObjectStore,
        *,
        known: Iterable[Digest] = (),
        chains: Mapping[Digest, tuple[Digest, ...]] | None = None,
        workers: int = 3,
        max_inflight: int = 64 << 20,
        progress: Progress | None = None,
        inline_max: int = INLINE_MAX,
        policy: E.Policy = E.POLICIES["off"],
        deltas: DeltaIndex | None = None,
        reader: ChunkReader | None = None,
    ) -> None:
        self.store = store
        self.stats = WriteStats()
        self._present: set[Digest] = set(known)
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="casstore-write")
        self._budget = threading.Condition()
        self._windows = 0  # bytes of read windows alive
        self._encoding = 0  # bytes that encoding holds besides the pieces
        self._max_windows = max(max_inflight // 2, 2 * MAX_WINDOW)
        self._max_encoding = max_inflight - max_inflight // 2
        self._adding = threading.Lock()  # one file at a time (the window budget is per file)
        self._progress = progress
        self._lock = threading.Lock()
        self.inline_max = inline_max
        self.inline: dict[Digest, bytes] = {}  # tiny chunks to keep in the manifest
        self.policy = policy
        self._deltas = deltas if policy.enabled and policy.max_chain > 0 else None
        self._reader = reader or (ChunkReader(store) if self._deltas is not None else None)
        self._chains: dict[Digest, tuple[Digest, ...]] = dict(chains or {})
        if deltas is not None:
            self._chains.update(deltas.chains)

    def add_file(
        self,
        chunker: Chunker,
        read_at: ReadAt,
        size: int,
        filename: str = "",
        *,
        view_at: ReadAt | None = None,
        layout: FileLayout | None = None,
    ) -> tuple[FileLayout, list[tuple[Digest, int]]]:
        """Chunk, hash and store one file; returns its layout and ordered (digest, size).
        ``view_at`` serves piece data without copying (e.g. from a memory map); ``layout`` is
        the file's already parsed layout."""
        with self._adding:
            windows = _Windows(self, view_at or read_at)
            layout, pieces = chunker.split(read_at, size, filename, view_at=windows.read,
                                           layout=layout)
            tensors = TensorCursor(layout.tensors)
            futures: deque[Future[tuple[Digest, int]]] = deque()
            out: list[tuple[Digest, int]] = []
            pos = 0
            try:
                for piece in pieces:
                    n = len(piece)
                    t = tensors.at(pos, n)
                    chain = None
                    if t is not None and self._deltas is not None and n > self.inline_max:
                        chain = self._deltas.base_for(filename, t, pos - t.offset, n)
                    window = windows.take()
                    futures.append(self._pool.submit(
                        self._store_piece, piece, n, t.dtype if t else None, chain, window))
                    pos += n
                    while futures and futures[0].done():
                        out.append(futures.popleft().result())
            finally:
                windows.close()
                for f in futures:  # drain, raising the first error
                    out.append(f.result())
            return layout, out

    def _encoding_memory(self, n: int, dtype: str | None, chain: tuple[Digest, ...] | None
                         ) -> int:
        """What encoding a piece of ``n`` bytes may hold besides the piece: its encoded copy
        (for a float tensor the raw streams gathered and the others compressed as they are
        split, under n; one zstd frame, at most n, for other data), and for a delta its
        decoded base plus, while decoding it, the base's stored object. A float tensor is
        charged 2n all the same, so that two chunk-sized float pieces do not encode at once:
        measured on a 512 MiB commit here, encoding them two at a time saved ~0.06 s of
        ~0.9 s and raised the process's peak RSS by ~27 MiB."""
        if not self.policy.enabled or n <= self.inline_max or n > MAX_DECODED:
            return 0
        floats = E.ITEM_SIZE.get(dtype or "", 1) > 1
        return (2 * n if floats else n) + (2 * n if chain else 0)

    def deltas_of(self, chunks: Iterable[tuple[Digest, int]]) -> dict[bytes, tuple[bytes, ...]]:
        """Delta chains of the given chunks, for a manifest's :class:`FileEntry`."""
        return {bytes(d): tuple(bytes(b) for b in self._chains[d])
                for d, _ in chunks if d in self._chains}

    def _acquire_window(self, n: int, keep: int) -> None:
        """Wait until a window of ``n`` bytes fits; ``keep``: the bytes of the window the
        chunker still holds (freed only after this read): with nothing else alive, go."""
        with self._budget:
            while self._windows - keep > 0 and self._windows + n > self._max_windows:
                self._budget.wait()
            self._windows += n

    def _release_window(self, n: int) -> None:
        with self._budget:
            self._windows -= n
            self._budget.notify_all()

    def _acquire_encoding(self, n: int) -> None:
        """Wait until ``n`` bytes of encoding memory fit; alone, always go (windows are freed
        only as pieces finish, so waiting for them here could wait forever)."""
        with self._budget:
            while self._encoding > 0 and self._encoding + n > self._max_encoding:
                self._budget.wait()
            self._encoding += n

    def _release_encoding(self, n: int) -> None:
        with self._budget:
            self._encoding -= n
            self._budget.notify_all()

    def _store_piece(self, piece: memoryview, n: int, dtype: str | None,
                     chain: tuple[Digest, ...] | None, window: _Window) -> tuple[Digest, int]:
        try:
            d = Digest.of(piece)
            new, stored, delta, found = False, 0, False, False
            if n <= self.inline_max:
                with self._lock:
                    self.inline.setdefault(d, bytes(piece))
            elif d not in self._present:
                key = chunk_key(d)
                try:
                    stored, found = self.store.stat(key).size, True  # costs what exists costs
                except NotFoundError:
                    found = False
                if found:
                    self._learn_chain(key, d)
                else:
                    need = self._encoding_memory(n, dtype, chain)
                    self._acquire_encoding(need)
                    try:
                        obj, got = self._encode(piece, n, dtype, chain)
                        new = self.store.put_if_absent(key, obj, sync=False)
                        stored = len(obj)
                        del obj  # the coded copy goes before its budget does
                    finally:
                        self._release_encoding(need)
                    if new:
                        delta = bool(got)
                        if got:
                            with self._lock:
                                self._chains[d] = got
                    else:  # written meanwhile by another writer, maybe encoded otherwise
                        self._learn_chain(key, d)
                        found = True
                self._present.add(d)
            with self._lock:
                self.stats.add(n, new, stored, delta, found)
            if self._progress is not None:
                self._progress(n)
            return d, n
        finally:
            window.done()

    def _encode(self, piece: memoryview, n: int, dtype: str | None,
                chain: tuple[Digest, ...] | None) -> tuple[Parts, tuple[Digest, ...]]:
        if not self.policy.enabled or n > MAX_DECODED:
            return chunk_parts(piece), ()
        base = None
        if chain and self._reader is not None:
            try:
                base = self._reader.read(chain[0], n)
            except (NotFoundError, CorruptObjectError):
                base = None  # no usable base: store the chunk whole
        enc = E.encode(piece, dtype, self.policy, base)
        got = chain if enc.delta and chain else ()
        return encoded_parts(enc, n, got), got

    def _learn_chain(self, key: str, d: Digest) -> None:
        """Record the chain of a chunk someone else stored (one small ranged read)."""
        if d in self._chains:
            return
        h = parse_header(self.store.get(key, 0, HEAD_READ), d)
        if h.chain:
            with self._lock:
                self._chains[d] = h.chain

    def close(self) -> None:
        """Wait for every write and make them durable."""
        self._pool.shutdown(wait=True)
        self.store.flush()

    def abort(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class _Window:
    """One read window of a file being added: its bytes stay paid for until the chunker has
    moved past it (``closed``) and every piece cut from it has been stored."""

    __slots__ = ("_writer", "closed", "pending", "size")

    def __init__(self, writer: ChunkWriter, size: int) -> None:
        self._writer, self.size, self.pending, self.closed = writer, size, 0, False

    def done(self) -> None:
        """A piece of this window was stored (or failed)."""
        with self._writer._budget:
            self.pending -= 1
        self._maybe_free()

    def close(self) -> None:
        with self._writer._budget:
            self.closed = True
        self._maybe_free()

    def _maybe_free(self) -> None:
        with self._writer._budget:
            if not self.closed or self.pending or self.size < 0:
                return
            size, self.size = self.size, -1
        self._writer._release_window(size)


class _Windows:
    """The reads of one file's pieces, paid for from the writer's window budget before they
    are made. The chunker reads a window, then cuts all its pieces, then reads the next: a
    piece belongs to the window read last."""

    def __init__(self, writer: ChunkWriter, read: ReadAt) -> None:
        self._writer, self._read = writer, read
        self._current: _Window | None = None

    def read(self, offset: int, length: int) -> bytes | memoryview:
        prev = self._current
        keep = prev.size if prev is not None and prev.size > 0 else 0
        self._writer._acquire_window(length, keep)
        try:
            data = self._read(offset, length)
        except BaseException:
            self._writer._release_window(length)
            raise
        self._current = _Window(self._writer, length)
        if prev is not None:  # the chunker drops the previous window as this read returns
            prev.close()
        return data

    def take(self) -> _Window:
        """The window of the piece just cut, counting one more piece of it in flight."""
        w = self._current
        if w is None:  # a chunker that cut a piece without reading: nothing to pay for
            w = self._current = _Window(self._writer, 0)
        with self._writer._budget:
            w.pending += 1
        return w

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None


class ChunkReader:
    """Verified reads of chunks, with bounded read-ahead for sequential streams.

    Tiny chunks stored inline in manifests are served from memory once a manifest holding
    them has been seen (:meth:`remember_inline`); they were verified with their manifest.
    A chunk stored as a delta is decoded from its base (read the same way, at most
    ``MAX_CHAIN`` deep); every chunk in the chain is verified against its own digest.
    With ``cache_bytes``, up to that many bytes of recently decoded chunks are kept, so a
    pass over many chunks (verify, transfers) decodes each base once, not once per delta.
    """

    def __init__(self, store: ObjectStore, *, workers: int | None = None,
                 cache_bytes: int = 0) -> None:
        self.store = store
        self._workers = workers or max(2, min(8, store.capabilities.concurrent_io))
        self._inline: dict[Digest, memoryview] = {}
        self._cache = _Decoded(cache_bytes)
        self._blocks = threading.local()

    def remember_inline(self, manifest: Manifest) -> None:
        self.remember_verified(verified_inline(manifest, skip=self._inline))

    def remember_verified(self, chunks: Mapping[Digest, memoryview]) -> None:
        """Inline chunks already checked against their digests (:func:`verified_inline`)."""
        for digest, data in chunks.items():
            self._inline.setdefault(digest, data)

    def read(self, digest: Digest, size: int | None = None) -> memoryview:
        """The verified bytes of a chunk; ``size`` (from the manifest) bounds decoding."""
        return self._read(digest, size, 0)

    def read_into(self, digest: Digest, size: int, buffer: bytearray) -> memoryview:
        """The verified ``size`` bytes of a chunk, read into ``buffer`` where the store can
        (local stores; a raw object then decodes to a view of ``buffer``, no copy); else as
        :meth:`read`. The result is valid until ``buffer`` is reused."""
        inline = self._inline.get(digest)
        if inline is None and self.store.capabilities.local:
            key = chunk_key(digest)
            try:
                n = self.store.get_into(key, buffer)
            except NotFoundError:
                raise NotFoundError(f"chunk {digest.short()} is missing from the store") from None
            if n <= len(buffer):
                data = decode_chunk(memoryview(buffer)[:n], digest, size=size,
                                    read_base=self._read)
            else:
                data = self._read(digest, size, 0)
        else:
            data = inline if inline is not None else self._read(digest, size, 0)
        if len(data) != size:
            raise CorruptObjectError(
                f"chunk {digest.short()}: holds {len(data)} bytes, the manifest says {size}"
            )
        return data

    def read_blocks(self, digest: Digest, size: int, buffers: BlockBuffers
                    ) -> Iterator[memoryview]:
        """The ``size`` bytes of a chunk as consecutive blocks, each valid until the next:
        what :meth:`read_into` gives, without a decoded copy of the whole chunk (nor of a
        delta's base, decoded block by block alongside). Objects are read into ``buffers``
        on local stores; a remote store's are fetched whole, then decoded the same way.

        Verified: a raw object before its first block, an encoded one (and a delta's base)
        as its blocks are hashed, the mismatch raised after the last block. So a caller
        writes the blocks only where a failure throws them away (checkout: a temporary file
        that gets its name once complete).
        """
        if digest in self._inline:
            yield self.read_into(digest, size, bytearray())  # no buffer is read into
            return
        h, payload = _framed(self._object(digest, buffers, 0), digest, size, 0)
        with buffers.base.lock if h.is_delta else contextlib.nullcontext():
            base = self._base_blocks(h.chain[0], size, buffers.base) if h.is_delta else None
            yield from self._verified(h, payload, digest, size, buffers.out, base)

    def _verified(self, h: ChunkHeader, payload: memoryview, digest: Digest, size: int,
                  out: bytearray, base: Iterator[memoryview] | None = None
                  ) -> Iterator[memoryview]:
        """A framed object's decoded blocks of ``len(out)`` bytes, verified: a raw one whole
        before its first block, an encoded one as its blocks are hashed."""
        if h.encoding == ENC_RAW:
            return E.slices(self._raw(payload, digest, size), len(out))
        return _verified_blocks(E.decode_blocks(h.inner, payload, size, out, base), digest,
                                size)

    def _object(self, digest: Digest, buffers: BlockBuffers | BaseBuffers, depth: int
                ) -> memoryview:
        """A chunk object, read into ``buffers.object`` on a local store (into a fresh buffer
        if it does not fit), fetched whole from a remote one."""
        key = chunk_key(digest)
        try:
            if self.store.capabilities.local:
                n = self.store.get_into(key, buffers.object)
                if n <= len(buffers.object):
                    return memoryview(buffers.object)[:n]
            return memoryview(fetch_object(self.store, key))
        except NotFoundError:
            what = "chunk" if depth == 0 else "delta base chunk"
            raise NotFoundError(f"{what} {digest.short()} is missing from the store") from None

    @staticmethod
    def _raw(payload: memoryview, digest: Digest, size: int) -> memoryview:
        if len(payload) != size:
            raise CorruptObjectError(
                f"chunk {digest.short()}: holds {len(payload)} bytes, the manifest says {size}")
        if Digest.of(payload) != digest:
            raise CorruptObjectError(
                f"chunk {digest.short()}: content does not match its digest")
        return payload

    def _base_blocks(self, digest: Digest, size: int, buffers: BaseBuffers
                     ) -> Iterator[memoryview]:
        """A delta's base as blocks of ``len(buffers.out)`` bytes, verified (at its end)."""
        if digest not in self._inline:
            raw = self._object(digest, buffers, 1)
            h, payload = _framed(raw, digest, size, 1)
            if not h.is_delta:
                yield from self._verified(h, payload, digest, size, buffers.out)
                return
            # a base that is a delta itself (policy max): decoded whole
            whole = decode_chunk(raw, digest, size=size, read_base=self._read, depth=1)
        else:  # as the whole-chunk reader allows
            whole = self._read(digest, size, 1)
        yield from E.slices(whole, len(buffers.out))

    @overload
    def check(self, raw: bytes | memoryview, digest: Digest, size: int | None = None, *,
              bases: Mapping[Digest, memoryview | StoredBase] | None = None,
              keep: Literal[True] = True) -> memoryview | StoredBase: ...
    @overload
    def check(self, raw: bytes | memoryview, digest: Digest, size: int | None = None, *,
              bases: Mapping[Digest, memoryview | StoredBase] | None = None,
              keep: bool) -> memoryview | StoredBase | None: ...

    def check(self, raw: bytes | memoryview, digest: Digest, size: int | None = None, *,
              bases: Mapping[Digest, memoryview | StoredBase] | None = None,
              keep: bool = True) -> memoryview | StoredBase | None:
        """Decode and verify an object's bytes already in hand (verify, repair, transfers);
        a delta's bases come from ``bases`` when there, else are read from this store.

        With ``keep=False`` (nobody needs it: not a base) and a known ``size``, returns None:
        the object is decoded and hashed a block at a time, with no decoded copy of it. Kept
        for ``bases`` (a pass that checks deltas after their bases), a chunk that is not a
        delta itself comes back as a :class:`StoredBase`: its object as stored, verified,
        decoded again block by block alongside each delta of it, so no decoded copy of a
        base is ever held either. Otherwise (a delta kept as a base; no ``bases``; no
        ``size``), the decoded bytes."""
        def read_base(d: Digest, n: int, depth: int) -> memoryview:
            got = bases.get(d) if bases is not None else None
            if isinstance(got, StoredBase):
                return got.decoded()
            return got if got is not None else self._read(d, n, depth)

        h, payload = _framed(raw, digest, size, 0)
        stored = keep and bases is not None and not h.is_delta
        if size is None or (keep and not stored):
            return self._cache.put(digest, decode_chunk(raw, digest, size=size,
                                                        read_base=read_base))
        out = self._block()
        base = None
        if h.is_delta:
            got = bases.get(h.chain[0]) if bases is not None else None
            base = (got.blocks(self._block(base=True)) if isinstance(got, StoredBase)
                    else E.slices(read_base(h.chain[0], size, 1), len(out)))
        for _ in self._verified(h, payload, digest, size, out, base):
            pass
        return StoredBase(h, payload, size) if stored else None

    def _block(self, *, base: bool = False) -> bytearray:
        """This thread's decoded-block buffer for :meth:`check` (or for a delta's base):
        half a read block, as fast here, and a verify runs up to 8 threads of them."""
        name = "base" if base else "out"
        out = getattr(self._blocks, name, None)
        if out is None:
            out = bytearray(BLOCK_BYTES // 2)
            setattr(self._blocks, name, out)
        return out

    def _read(self, digest: Digest, size: int | None, depth: int) -> memoryview:
        inline = self._inline.get(digest)
        if inline is not None:
            if size is not None and len(inline) != size:
                raise CorruptObjectError(
                    f"inline chunk {digest.short()}: holds {len(inline)} bytes, expected {size}"
                )
            return inline
        cached = self._cache.get(digest)
        if cached is not None and (size is None or len(cached) == size):
            return cached
        try:
            raw = fetch_object(self.store, chunk_key(digest))
        except NotFoundError:
            what = "chunk" if depth == 0 else "delta base chunk"
            raise NotFoundError(f"{what} {digest.short()} is missing from the store") from None
        data = decode_chunk(raw, digest, size=size, read_base=self._read, depth=depth)
        return self._cache.put(digest, data)

    def stream(self, digests: Iterable[Digest], *, ahead: int = 4,
               sizes: Iterable[int] | None = None) -> Iterator[memoryview]:
        """Verified payloads in order, reading up to ``ahead`` chunks in parallel."""
        it = zip(digests, sizes) if sizes is not None else ((d, None) for d in digests)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self._workers, thread_name_prefix="casstore-read") as pool:
            window: deque[Future[memoryview]] = deque()
            for d, n in it:
                window.append(pool.submit(self.read, d, n))
                if len(window) >= ahead:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()


BLOCK_BYTES = 1 << 20
"""Decoded bytes per block when a chunk is read block by block (:meth:`ChunkReader.read_blocks`)."""


class StoredBase:
    """A verified chunk object (not a delta) that deltas still to be checked decode against:
    kept as stored, decoded again when needed (:meth:`ChunkReader.check`)."""

    __slots__ = ("header", "payload", "size")

    def __init__(self, header: ChunkHeader, payload: memoryview, size: int) -> None:
        self.header, self.payload, self.size = header, payload, size

    def __len__(self) -> int:
        """Bytes held (the object as stored)."""
        return len(self.payload)

    def blocks(self, out: bytearray) -> Iterator[memoryview]:
        """The chunk's bytes as blocks of ``len(out)`` (verified when it was kept)."""
        if self.header.encoding == ENC_RAW:
            return E.slices(self.payload, len(out))
        return E.decode_blocks(self.header.inner, self.payload, self.size, out)

    def decoded(self) -> memoryview:
        """The chunk's bytes whole (for a delta that is itself a base: decoded whole)."""
        if self.header.encoding == ENC_RAW:
            return self.payload
        return E.decode(self.header.inner, self.payload, self.size, None)


class _ObjectBuffer:
    """A chunk object's reusable buffer, made when a local object is first read into it."""

    def __init__(self, largest: int) -> None:
        self._size = largest + HEAD_READ
        self._object: bytearray | None = None

    @property
    def object(self) -> bytearray:
        if self._object is None:
            self._object = bytearray(self._size)
        return self._object


class BaseBuffers(_ObjectBuffer):
    """Buffers for decoding a delta's base block by block: its object and one decoded block.
    One set serves all the threads of a reader (a lock), so decoding deltas in parallel does
    not hold one base per thread."""

    def __init__(self, largest: int, block: int = BLOCK_BYTES) -> None:
        super().__init__(largest)
        self.lock = threading.Lock()
        self.out = bytearray(block)


class BlockBuffers(_ObjectBuffer):
    """One reader thread's reusable buffers for :meth:`ChunkReader.read_blocks`: a chunk
    object, one decoded block, and the (shared) :class:`BaseBuffers` for a delta's base."""

    def __init__(self, largest: int, base: BaseBuffers) -> None:
        super().__init__(largest)
        self.out = bytearray(len(base.out))
        self.base = base


def _verified_blocks(blocks: Iterator[memoryview], digest: Digest, size: int
                     ) -> Iterator[memoryview]:
    """``blocks`` passed through and hashed; after the last, the digest and length checked."""
    h, n = hasher(), 0
    try:
        for block in blocks:
            h.update(block)
            n += len(block)
            yield block
    except CorruptObjectError as e:
        raise CorruptObjectError(f"chunk {digest.short()}: {e}") from None
    if n != size:
        raise CorruptObjectError(f"chunk {digest.short()}: holds {n} bytes, expected {size}")
    if Digest(h.digest()) != digest:
        raise CorruptObjectError(f"chunk {digest.short()}: content does not match its digest")


class _Decoded:
    """Verified decoded chunks, least recently used dropped first, at most ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[Digest, memoryview] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, digest: Digest) -> memoryview | None:
        if not self.limit:
            return None
        with self._lock:
            data = self._items.get(digest)
            if data is not None:
                self._items.move_to_end(digest)
            return data

    def put(self, digest: Digest, data: memoryview) -> memoryview:
        if not self.limit or len(data) > self.limit:
            return data
        with self._lock:
            if digest not in self._items:
                self._items[digest] = data
                self._bytes += len(data)
                while self._bytes > self.limit:
                    _, old = self._items.popitem(last=False)
                    self._bytes -= len(old)
        return data
