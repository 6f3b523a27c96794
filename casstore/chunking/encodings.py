"""Lossless chunk encodings: float-aware split streams, zstd, XOR deltas. Pure, no I/O.

Encodings (the number is what a chunk object's header records)::

    0 raw    the bytes as they are
    1 zstd   one zstd frame (headers, pickles, integer data, anything without a float dtype)
    2 split  "split streams": byte k of every value grouped into stream k, each stream
             zstd-compressed or stored raw when it does not compress (the noisy low mantissa
             bytes); bytes past the last whole value are stored raw. Floats are first rotated
             left by one bit (sign to the bottom, ZipNN's trick), so the whole exponent is one
             byte: in fp32/bf16 its 8 bits otherwise straddle two bytes, and the bit that
             spills over makes the top mantissa byte noisier (split format 1; format 0, no
             rotation, is for integers and for objects written before rotation existed)
    3 delta  XOR with a base chunk of the same length, then raw, zstd or split as above
             (framing of the base's name is the chunk format's business: ``casstore.repo.chunks``)

A cheap predictor (:func:`encode`) compresses a few small samples of a chunk, per stream, and
only then encodes the whole chunk the way the samples say pays, so incompressible data is
stored raw at almost no cost. Decoding is bounded: the caller states the decoded size and
nothing larger is ever allocated. numpy does the byte grouping and XOR, zstandard the entropy
coding; both release the GIL, so encoding runs in parallel in the writer's threads.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from casstore.chunking.defaults import DEFAULT_POLICY, POLICY_NAMES
from casstore.errors import CorruptObjectError, InvalidInputError

if TYPE_CHECKING:
    import numpy as np

RAW, ZSTD, SPLIT, DELTA = 0, 1, 2, 3
NAMES = {RAW: "raw", ZSTD: "zstd", SPLIT: "split", DELTA: "delta"}

ITEM_SIZE: dict[str, int] = {
    # element width of the dtypes whose bytes are worth grouping (safetensors names)
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "C64": 4, "C128": 8, "C32": 2,
    "I64": 8, "I32": 4, "I16": 2, "U64": 8, "U32": 4, "U16": 2,
}
"""Byte grouping applies to these; every other dtype (fp8 included: one byte per value, whose
distribution zstd's Huffman stage already models) is coded as a single stream."""
FLOATS = frozenset({"F64", "F32", "F16", "BF16", "C64", "C128", "C32"})
"""Values rotated left one bit before grouping (sign bit to the bottom: whole exponent bytes)."""
_UINT = {2: "uint16", 4: "uint32", 8: "uint64"}

MIN_SIZE = 4096  # smaller chunks are not worth a header
SAMPLES = 4  # windows read by the predictor
SAMPLE_BYTES = 16 << 10  # bytes per window
WINDOW_LOG = 17
"""zstd window: 128 KiB. A streaming compressor keeps a window-sized copy of its input per
thread and stream; matches further back than this are rare in float streams (same ratio on
the benchmark series as zstd's default window, which grows to the stream's size)."""
_STREAM_RAW, _STREAM_ZSTD = 0, 1
_SPLIT_HEAD = struct.Struct("<BB")  # format 0, item size
_STREAM_HEAD = struct.Struct("<BI")  # method, stored length


@dataclass(frozen=True)
class Policy:
    """How hard to try. ``off`` stores raw; ``fast`` (default) and ``max`` differ in zstd level,
    how much a stream must shrink to be kept compressed, and delta chain length."""

    name: str
    level: int = 1
    min_match: int = 7  # zstd: with 7, the few short repeats of noisy float bytes are skipped
    hash_log: int = 6  # zstd: a tiny match table stays in L1 (exponent streams: 2x faster
    search_log: int = 1  # than hash_log 10, same or better ratio; benchmarks/codecs.py)
    keep_below: float = 0.93  # a stream (or chunk) is stored compressed if it shrinks below this
    max_chain: int = 3  # reading a chunk needs at most this many base chunks
    remote_deltas: bool = False  # fetch parent chunks from a remote store to compute deltas

    @property
    def enabled(self) -> bool:
        return self.name != "off"


POLICIES: dict[str, Policy] = {
    "off": Policy("off", max_chain=0),
    # fast: a delta's base is always a keyframe, so a commit decodes one base per delta and a
    # read at most two chunks; chains of 3 stored 2-3 % less on the training series (bf16
    # 0.605 vs 0.625 of logical, fp32 0.805 vs 0.814) for up to 4 decodes per chunk read
    "fast": Policy("fast", max_chain=1),
    "max": Policy("max", keep_below=0.99, max_chain=8, remote_deltas=True),
}
assert tuple(POLICIES) == POLICY_NAMES and DEFAULT_POLICY in POLICIES


def get_policy(name: str) -> Policy:
    try:
        return POLICIES[name]
    except KeyError:
        raise InvalidInputError(
            f"unknown encoding policy {name!r}: choose one of {', '.join(POLICIES)}"
        ) from None


@dataclass(frozen=True)
class Encoded:
    """A chunk's encoded payload as buffers to store back to back (no joined copy)."""

    encoding: int  # RAW, ZSTD or SPLIT: how the (possibly XOR-ed) bytes are coded
    delta: bool  # True: the coded bytes are the XOR with the base
    parts: tuple[memoryview | bytes, ...]

    @property
    def size(self) -> int:
        return sum(len(p) for p in self.parts)


# -- zstd, one compressor per thread (zstandard's objects are not thread-safe) ---------------
_local = threading.local()


def _zstd():  # type: ignore[no-untyped-def]
    import zstandard

    return zstandard


def _compressor(policy: Policy, stream: int = -1):  # type: ignore[no-untyped-def]
    """This thread's compressor for ``policy`` (one per ``stream`` compressed at once)."""
    cache = getattr(_local, "c", None)
    if cache is None:
        cache = _local.c = {}
    key = (policy.level, policy.min_match, policy.hash_log, policy.search_log, stream)
    c = cache.get(key)
    if c is None:
        zstd = _zstd()
        params = zstd.ZstdCompressionParameters.from_level(
            policy.level, min_match=policy.min_match, hash_log=policy.hash_log,
            search_log=policy.search_log, window_log=WINDOW_LOG, write_content_size=True)
        c = cache[key] = zstd.ZstdCompressor(compression_params=params)
    return c


def _decompressor():  # type: ignore[no-untyped-def]
    d = getattr(_local, "d", None)
    if d is None:
        d = _local.d = _zstd().ZstdDecompressor()
    return d


def _np():  # type: ignore[no-untyped-def]
    import numpy

    return numpy


# -- the predictor -----------------------------------------------------------------------------
def _sample(data: memoryview, item: int) -> memoryview | bytes:
    """A few windows spread through ``data`` (whole values only)."""
    n = len(data) // item * item
    win = SAMPLE_BYTES // item * item
    step = (n - win) // (SAMPLES - 1) // item * item
    return b"".join(data[i * step : i * step + win] for i in range(SAMPLES))


_BLOCK = 1 << 15
"""Values per block when splitting or joining streams: a block (and its rotated copy) stays in
the CPU cache, so a chunk of any size is read from memory once, not once per stream."""


def _blocks(buf: memoryview | bytes, item: int, rotate: bool,
            base: memoryview | bytes | None = None,
            into: dict[int, np.ndarray] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Block by block: (first value, the block's streams as an ``(item, values)`` array, valid
    until the next block). Stream k = byte k of every whole value (of the values rotated left
    one bit if ``rotate``); of ``buf XOR base`` when ``base`` is given (XOR-ed a block at a
    time: no chunk-sized copy). The streams ``into`` names (k: a whole-chunk row) go straight
    there instead (their rows of the block array are then left as they were).

    A block is copied (or XOR-ed) into an aligned buffer of unsigned integers, then stream k
    is the low byte of the values shifted right ``8k`` bits (``8k - 1`` rotated; stream 0 of
    rotated values is ``v << 1 | v >> (bits - 1)``): contiguous shifts and truncating copies,
    ~1.8x faster than numpy's strided transpose of the byte matrix (and than rotating first),
    and the same bytes (tests compare both)."""
    np = _np()
    kind = _UINT[item]
    count = len(buf) // item
    src = np.frombuffer(buf, kind, count)  # may be unaligned: only read by the copy below
    other = None if base is None else np.frombuffer(base, kind, count)
    m = min(_BLOCK, count)
    streams = np.empty((item, m), np.uint8)
    values, shifted, spare = (np.empty(m, kind) for _ in range(3))
    top = 8 * item - 1
    for i in range(0, count, _BLOCK):
        n = min(_BLOCK, count - i)
        v, w, st = values[:n], shifted[:n], streams[:, :n]
        if other is None:
            np.copyto(v, src[i : i + n])
        else:
            np.bitwise_xor(src[i : i + n], other[i : i + n], out=v)
        for k in range(item):
            if not rotate:
                np.right_shift(v, 8 * k, out=w)
            elif k:
                np.right_shift(v, 8 * k - 1, out=w)
            else:
                np.left_shift(v, 1, out=w)
                np.bitwise_or(w, np.right_shift(v, top, out=spare[:n]), out=w)
            row = st[k] if into is None or k not in into else into[k][i : i + n]
            np.copyto(row, w, casting="unsafe")  # the low byte
        yield i, st


def _fill(buf: memoryview | bytes, item: int, rotate: bool, base: memoryview | bytes | None,
          into: dict[int, np.ndarray]) -> None:
    """The streams ``into`` names, whole (see :func:`_blocks`)."""
    for _ in _blocks(buf, item, rotate, base, into=into):
        pass


def _split(buf: memoryview | bytes, item: int, rotate: bool,
           base: memoryview | bytes | None = None) -> list[np.ndarray]:
    """Every stream of :func:`_blocks`, whole."""
    rows = _np().empty((item, len(buf) // item), _np().uint8)
    _fill(buf, item, rotate, base, dict(enumerate(rows)))
    return list(rows)


def _streams(buf: memoryview | bytes, item: int, rotate: bool, policy: Policy,
             methods: list[int], base: memoryview | bytes | None = None
             ) -> list[memoryview | bytes]:
    """The streams of :func:`_blocks` as ``methods`` say: the raw ones gathered, the others
    zstd-compressed as their blocks come (no uncompressed copy of them is held); a stream
    that did not shrink below ``keep_below`` after all is gathered again, raw."""
    np = _np()
    count = len(buf) // item
    raw = [k for k in range(item) if methods[k] == _STREAM_RAW]
    rows = np.empty((len(raw), count), np.uint8)
    coders = {k: _compressor(policy, k).compressobj(size=count)
              for k in range(item) if methods[k] == _STREAM_ZSTD}
    coded: dict[int, list[bytes]] = {k: [] for k in coders}
    for _, block in _blocks(buf, item, rotate, base, into=dict(zip(raw, rows, strict=True))):
        for k, coder in coders.items():
            coded[k].append(coder.compress(block[k]))
    out: list[memoryview | bytes] = []
    for k in range(item):
        if k in coders:
            z = b"".join(coded.pop(k)) + coders[k].flush()
            if len(z) < policy.keep_below * count:
                out.append(z)
                continue
            row = np.empty(count, np.uint8)  # mispredicted: the stream raw after all
            _fill(buf, item, rotate, base, {k: row})
            out.append(memoryview(row))
        else:
            out.append(memoryview(rows[raw.index(k)]))
    return out


def _code(rows: list[np.ndarray], policy: Policy, c, methods: list[int] | None = None  # type: ignore[no-untyped-def]
          ) -> tuple[list[bytes | memoryview], int]:
    """Each row zstd-compressed where ``methods`` say so (all tried if None) and it pays."""
    out, total = [], 0
    for k, row in enumerate(rows):
        if methods is None or methods[k] == _STREAM_ZSTD:
            z = c.compress(row)
            if len(z) < policy.keep_below * len(row):
                out.append(z)
                total += len(z)
                continue
        out.append(memoryview(row))
        total += len(row)
    return out, total


def _plan(data: memoryview, item: int, rotate: bool, policy: Policy,
          base: memoryview | bytes | None = None) -> tuple[list[int], float]:
    """Per stream: compress or store raw (from samples of ``data``, or of ``data XOR base``);
    and the estimated encoded/raw ratio."""
    sample = _sample(data, item)
    if base is not None:
        sample = xor(sample, _sample(memoryview(base).cast("B"), item))
    rows = [_np().frombuffer(sample, _np().uint8)] if item == 1 else _split(sample, item, rotate)
    coded, total = _code(rows, policy, _compressor(policy))
    methods = [_STREAM_RAW if isinstance(z, memoryview) else _STREAM_ZSTD for z in coded]
    return methods, total / len(sample)


def xor(data: memoryview | bytes, base: memoryview | bytes) -> memoryview:
    """``data XOR base`` (same length) as a new buffer."""
    np = _np()
    a = np.frombuffer(data, np.uint8)
    return memoryview(np.bitwise_xor(a, np.frombuffer(base, np.uint8)))


def encode(
    data: memoryview | bytes,
    dtype: str | None,
    policy: Policy,
    base: memoryview | bytes | None = None,
) -> Encoded:
    """Encode one chunk; ``base`` (same length) allows a delta.

    ``dtype`` is the element type of the tensor the chunk holds (None for other data). Chunks
    up to a few samples long are encoded whole (plain and as a delta, keeping the smaller);
    larger ones are planned from samples and encoded once. Returns
    ``Encoded(RAW, False, (data,))`` whenever nothing pays, without copying ``data``.
    """
    data = memoryview(data).cast("B")
    raw = Encoded(RAW, False, (data,))
    if not policy.enabled or len(data) < MIN_SIZE:
        return raw
    item = ITEM_SIZE.get(dtype or "", 1)
    rotate = item > 1 and dtype in FLOATS
    if base is None or len(base) != len(data) or policy.max_chain <= 0:
        base = None
    if len(data) <= 2 * SAMPLES * SAMPLE_BYTES:  # small: the samples would be the chunk
        best = _whole(data, item, rotate, policy, None)
        if base is not None:
            d = _whole(xor(data, base), item, rotate, policy, None)
            if d is not None and (best is None or d.size < best.size * 0.98):
                best = Encoded(d.encoding, True, d.parts)
        return best or raw
    methods, ratio = _plan(data, item, rotate, policy)
    delta = False
    if base is not None:
        d_methods, d_ratio = _plan(data, item, rotate, policy, base)
        if d_ratio < ratio - 0.02:  # a delta must pay for the base read it costs later
            delta, methods, ratio = True, d_methods, d_ratio
    if ratio >= policy.keep_below or all(m == _STREAM_RAW for m in methods):
        return raw  # a delta stored raw would only add a base to read
    enc = _whole(data, item, rotate, policy, methods, base if delta else None)
    return raw if enc is None else Encoded(enc.encoding, delta, enc.parts)


def _whole(buf: memoryview, item: int, rotate: bool, policy: Policy,
           methods: list[int] | None, base: memoryview | bytes | None = None
           ) -> Encoded | None:
    """``buf`` (XOR ``base`` when given) as one zstd frame (item 1) or split streams; None if
    it does not shrink."""
    c = _compressor(policy)
    if item == 1:
        z = c.compress(buf if base is None else xor(buf, base))
        return Encoded(ZSTD, False, (z,)) if len(z) < policy.keep_below * len(buf) else None
    count = len(buf) // item
    if methods is None:
        coded, total = _code(_split(buf, item, rotate, base), policy, c)
    else:
        coded = _streams(buf, item, rotate, policy, methods, base)
        total = sum(len(z) for z in coded)
    if total >= policy.keep_below * count * item:
        return None
    heads = [_SPLIT_HEAD.pack(1 if rotate else 0, item)]
    heads += [_STREAM_HEAD.pack(_STREAM_RAW if isinstance(z, memoryview) else _STREAM_ZSTD,
                                len(z)) for z in coded]
    tail = buf[count * item :] if base is None else xor(buf[count * item :],
                                                         memoryview(base)[count * item :])
    return Encoded(SPLIT, False, (b"".join(heads), *coded, tail))


# -- decoding ----------------------------------------------------------------------------------
def decode(encoding: int, payload: memoryview | bytes, size: int,
           base: memoryview | bytes | None = None) -> memoryview:
    """The ``size`` decoded bytes of a payload (XOR-ed with ``base`` when given).

    Never allocates more than ``size`` bytes of output; anything that does not decode to
    exactly ``size`` bytes is a :class:`CorruptObjectError`.
    """
    payload = memoryview(payload).cast("B")
    if base is not None and len(base) != size:
        raise CorruptObjectError(f"delta base has {len(base)} bytes, chunk needs {size}")
    if encoding == RAW:
        if len(payload) != size:
            raise CorruptObjectError(f"raw payload has {len(payload)} bytes, expected {size}")
        return payload if base is None else xor(payload, base)
    if encoding == ZSTD:
        out = _np().frombuffer(_unzstd(payload, size), _np().uint8)
    elif encoding == SPLIT:
        out = _decode_split(payload, size)
    else:
        raise CorruptObjectError(f"unknown encoding {encoding}")
    if base is not None:
        np = _np()
        if not out.flags.writeable:
            out = out.copy()
        np.bitwise_xor(out, np.frombuffer(base, np.uint8), out=out)
    return memoryview(out).cast("B")


def _check_frame(payload: memoryview, size: int) -> None:
    """A zstd frame that declares the ``size`` bytes expected, before it is decoded."""
    zstandard = _zstd()
    try:
        declared = zstandard.frame_content_size(payload)
    except zstandard.ZstdError as e:
        raise CorruptObjectError(f"bad zstd frame: {e}") from e
    if declared != size:
        raise CorruptObjectError(f"zstd frame declares {declared} bytes, expected {size}")


def _unzstd(payload: memoryview, size: int) -> bytes:
    zstandard = _zstd()
    _check_frame(payload, size)
    try:
        out = _decompressor().decompress(payload, max_output_size=size)
    except zstandard.ZstdError as e:
        raise CorruptObjectError(f"zstd frame does not decode: {e}") from e
    if len(out) != size:
        raise CorruptObjectError(f"zstd frame decoded to {len(out)} bytes, expected {size}")
    return out


def slices(buf: memoryview, step: int) -> Iterator[memoryview]:
    """``buf`` as consecutive views of ``step`` bytes (the last may be shorter): the blocks
    of a chunk already whole, in step with :func:`decode_blocks`."""
    return (buf[i : i + step] for i in range(0, len(buf), step))


def decode_blocks(encoding: int, payload: memoryview | bytes, size: int,
                  out: bytearray | memoryview,
                  base: Iterator[memoryview] | None = None) -> Iterator[memoryview]:
    """The ``size`` decoded bytes of a payload as consecutive blocks of ``len(out)`` bytes (the
    last may be shorter), each valid until the next is asked for: what :func:`decode` gives,
    without holding a decoded copy of the whole chunk. ``out`` is the block buffer (its length
    a multiple of 8); ``base``: a delta's base as blocks of the same length, XOR-ed in.

    The payload's framing is checked before the first block; a payload that does not decode
    to exactly ``size`` bytes, or a base of another length, raises
    :class:`CorruptObjectError` (possibly after some blocks were given).
    """
    payload = memoryview(payload).cast("B")
    step = len(out)
    if encoding == RAW:
        if len(payload) != size:
            raise CorruptObjectError(f"raw payload has {len(payload)} bytes, expected {size}")
        blocks = slices(payload, step)
    elif encoding == ZSTD:
        blocks = _zstd_blocks(payload, size, out)
    elif encoding == SPLIT:
        blocks = _split_blocks(payload, size, out)
    else:
        raise CorruptObjectError(f"unknown encoding {encoding}")
    if base is None:
        yield from blocks
        return
    np = _np()
    dest = np.frombuffer(out, np.uint8)
    for block in blocks:
        other = next(base, None)
        if other is None or len(other) != len(block):
            raise CorruptObjectError(f"delta base has other than {size} bytes")
        n = len(block)
        np.bitwise_xor(np.frombuffer(block, np.uint8), np.frombuffer(other, np.uint8),
                       out=dest[:n])
        yield memoryview(out)[:n]
    if next(base, None) is not None:  # also lets a base that checks itself at its end do so
        raise CorruptObjectError(f"delta base has other than {size} bytes")


class _Row:
    """One split stream's bytes, taken in order a piece at a time: stored raw, a view of the
    payload; zstd-compressed, decompressed as taken into a buffer of ``piece`` bytes, so a
    block-by-block decode never holds a whole decompressed stream."""

    def __init__(self, body: memoryview, count: int, compressed: bool, piece: int) -> None:
        self._pos, self._count = 0, count
        if not compressed:
            self._raw: np.ndarray | None = _np().frombuffer(body, _np().uint8)
            return
        self._raw = None
        _check_frame(body, count)
        # a decompressor of its own: a stream reader works in its decompressor's context,
        # and a split payload's streams are read in turns
        self._reader = _zstd().ZstdDecompressor().stream_reader(body)
        self._buf = _np().empty(min(piece, count), _np().uint8)

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` bytes (at most ``piece``), valid until the next call."""
        if self._raw is not None:
            at, self._pos = self._pos, self._pos + n
            return self._raw[at : at + n]
        self.take_into(memoryview(self._buf)[:n])
        return self._buf[:n]

    def take_into(self, view: memoryview) -> None:
        """The next ``len(view)`` bytes of a compressed stream, decompressed into ``view``."""
        at, got = self._pos, 0
        self._pos += len(view)
        try:
            while got < len(view):
                k = self._reader.readinto(view[got:])
                if not k:
                    raise CorruptObjectError(
                        f"zstd frame decoded to {at + got} bytes, expected {self._count}")
                got += k
        except _zstd().ZstdError as e:
            raise CorruptObjectError(f"zstd frame does not decode: {e}") from e


def _zstd_blocks(payload: memoryview, size: int, out: bytearray | memoryview
                 ) -> Iterator[memoryview]:
    """A zstd payload's ``size`` bytes as blocks of ``len(out)``, decompressed straight into
    ``out`` as taken."""
    row = _Row(payload, size, True, 0)
    for off in range(0, size, len(out)):
        block = memoryview(out)[: min(len(out), size - off)]
        row.take_into(block)
        yield block


def _split_rows(payload: memoryview, size: int
                ) -> tuple[int, int, int, list[_Row], memoryview]:
    """A split payload's format, item size, value count, streams (as :class:`_Row`, taken
    ``_BLOCK`` values at a time) and tail."""
    if len(payload) < _SPLIT_HEAD.size:
        raise CorruptObjectError("split payload too short")
    fmt, item = _SPLIT_HEAD.unpack_from(payload)
    if fmt not in (0, 1) or item < 2 or item > 16 or (fmt == 1 and item not in _UINT):
        raise CorruptObjectError(f"split payload: format {fmt}, item size {item} not understood")
    count = size // item
    pos = _SPLIT_HEAD.size + item * _STREAM_HEAD.size
    if len(payload) < pos:
        raise CorruptObjectError("split payload header truncated")
    rows = []
    for k in range(item):
        method, length = _STREAM_HEAD.unpack_from(payload, _SPLIT_HEAD.size + k * _STREAM_HEAD.size)
        body = payload[pos : pos + length]
        if len(body) != length:
            raise CorruptObjectError("split payload truncated")
        pos += length
        if method == _STREAM_ZSTD:
            rows.append(_Row(body, count, True, _BLOCK))
        elif method == _STREAM_RAW and length == count:
            rows.append(_Row(body, count, False, _BLOCK))
        else:
            raise CorruptObjectError(f"split stream {k}: method {method}, {length} bytes")
    tail = payload[pos:]
    if len(tail) != size - count * item:
        raise CorruptObjectError(f"split payload: {len(tail)} trailing bytes, expected "
                                 f"{size - count * item}")
    return fmt, item, count, rows, tail


def _join(rows: list[_Row], fmt: int, item: int, out: np.ndarray) -> None:
    """The next ``len(out)`` values (``out``: shape (values, item)) from the streams, a
    CPU-cache-sized block at a time, rotated back right one bit in format 1.

    Item sizes with an unsigned integer type are put together as integers (stream 0
    widened, then each stream k shifted left ``8k`` bits and or-ed in: contiguous passes,
    ~15 % faster than writing each stream into its column of the byte matrix, a strided
    copy); others (hand-made objects only) column by column."""
    np = _np()
    kind = _UINT.get(item)
    if kind is None:
        for i in range(0, len(out), _BLOCK):
            block = out[i : i + _BLOCK]
            for k, row in enumerate(rows):
                block[:, k] = row.take(len(block))
        return
    spare = np.empty(min(_BLOCK, len(out)), kind)
    for i in range(0, len(out), _BLOCK):
        v = out[i : i + _BLOCK].reshape(-1).view(kind)
        t = spare[: len(v)]
        np.copyto(v, rows[0].take(len(v)))
        for k in range(1, item):
            np.left_shift(rows[k].take(len(v)), 8 * k, out=t, dtype=kind, casting="unsafe")
            np.bitwise_or(v, t, out=v)
        if fmt == 1:
            np.left_shift(v, 8 * item - 1, out=t)
            np.right_shift(v, 1, out=v)
            np.bitwise_or(v, t, out=v)


def _split_blocks(payload: memoryview, size: int, out: bytearray | memoryview
                  ) -> Iterator[memoryview]:
    np = _np()
    fmt, item, count, rows, tail = _split_rows(payload, size)
    step = len(out)
    if step % item:  # only a hand-made object has such an item size: decode it whole
        yield from slices(memoryview(_decode_split(payload, size)), step)
        return
    dest = np.frombuffer(out, np.uint8)
    values = count * item
    for off in range(0, size, step):
        n = min(step, size - off)
        m = max(0, min(n, values - off))  # bytes of whole values in this block
        if m:
            _join(rows, fmt, item, dest[:m].reshape(-1, item))
        if m < n:
            start = max(0, off - values)
            dest[m:n] = np.frombuffer(tail[start : start + n - m], np.uint8)
        yield memoryview(out)[:n]


def _decode_split(payload: memoryview, size: int) -> np.ndarray:
    np = _np()
    fmt, item, count, rows, tail = _split_rows(payload, size)
    full = np.empty(size, np.uint8)
    _join(rows, fmt, item, full[: count * item].reshape(count, item))
    full[count * item :] = np.frombuffer(tail, np.uint8)
    return full
