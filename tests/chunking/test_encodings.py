"""Chunk encodings: bit-exact round trips for every dtype and odd length, deltas, bounds.

Floats are built from raw bit patterns, so NaN payloads, infinities, negative zero and
subnormals are all in play; a test policy that compresses every stream (and one that
compresses none) drives every code path whatever the predictor would pick.
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casstore.chunking import encodings as E
from casstore.errors import CorruptObjectError, InvalidInputError

ALWAYS = E.Policy("always", keep_below=2.0, max_chain=8)  # compress every stream, take any delta
NEVER_STREAM = E.Policy("never", keep_below=0.0, max_chain=8)
POLICIES = [E.POLICIES["fast"], E.POLICIES["max"], ALWAYS, NEVER_STREAM]
DTYPES = [None, "F32", "F16", "BF16", "F64", "F8_E4M3", "F8_E5M2", "I32", "U16", "C64"]
WIDTH = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I32": 4, "U16": 2, "C64": 4}

SPECIAL32 = [0x7FC00000, 0x7FC00001, 0xFFA5A5A5, 0x7F800001, 0x7F800000, 0xFF800000,
             0x80000000, 0x00000000, 0x00000001, 0x807FFFFF, 0x3F800000]
SPECIAL16 = [0x7E00, 0x7E01, 0xFE55, 0x7C00, 0xFC00, 0x8000, 0x0000, 0x0001, 0x83FF,
             0x7FC0, 0x7F81, 0xFF80, 0x0040]  # fp16 and bf16 NaN/inf/-0/subnormals
SPECIAL64 = [0x7FF8000000000001, 0xFFF0000000000000, 0x8000000000000000, 0x1, 0x7FF0000000000000]


def _values(draw, dtype: str | None, n: int) -> bytes:
    width = WIDTH.get(dtype or "", 1)
    specials = {4: SPECIAL32, 2: SPECIAL16, 8: SPECIAL64, 1: [0x7F, 0xFF, 0x80, 0x00, 0x01]}
    fmt = {1: "B", 2: "H", 4: "I", 8: "Q"}[width]
    # realistic floats (gaussian, small) mixed with specials and raw noise
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    count = n // width + 1
    if width == 4:
        vals = (rng.standard_normal(count) * 0.02).astype(np.float32).view(np.uint32)
    elif width == 2:
        vals = (rng.standard_normal(count) * 0.02).astype(np.float16).view(np.uint16)
    elif width == 8:
        vals = rng.standard_normal(count).view(np.uint64)
    else:
        vals = rng.integers(0, 256, count, dtype=np.uint8)
    vals = vals.copy()
    picks = draw(st.lists(st.tuples(st.integers(0, count - 1), st.sampled_from(specials[width])),
                          max_size=64))
    for i, v in picks:
        vals[i] = v
    raw = vals.tobytes()
    if draw(st.booleans()):  # a stretch of pure noise
        a = draw(st.integers(0, len(raw)))
        raw = raw[:a] + rng.bytes(min(len(raw) - a, 2048)) + raw[a + 2048 :]
    assert struct.calcsize(fmt) == width
    return raw[:n]


@st.composite
def chunks(draw):
    dtype = draw(st.sampled_from(DTYPES))
    n = draw(st.one_of(st.integers(0, 64), st.integers(E.MIN_SIZE, 300_000)))
    return dtype, _values(draw, dtype, n)


def _roundtrip(enc: E.Encoded, size: int, base: bytes | None = None) -> bytes:
    """Decoded whole, and block by block (blocks of a few sizes) the same."""
    payload = b"".join(bytes(p) for p in enc.parts)
    whole = bytes(E.decode(enc.encoding, payload, size, base if enc.delta else None))
    for step in (8, 296, 1 << 16):
        assert _blocks(enc.encoding, payload, size, step, base if enc.delta else None) == whole
    return whole


def _blocks(encoding: int, payload: bytes, size: int, step: int,
            base: bytes | None = None) -> bytes:
    """decode_blocks joined; base given as blocks of the same length, as readers do."""
    bases = None if base is None else (memoryview(base)[i : i + step]
                                       for i in range(0, len(base), step))
    got = [bytes(b) for b in E.decode_blocks(encoding, payload, size, bytearray(step), bases)]
    assert all(len(b) == step for b in got[:-1])
    return b"".join(got)


@settings(max_examples=150, deadline=None)
@given(c=chunks(), policy=st.sampled_from(POLICIES))
def test_round_trip_is_bit_exact(c, policy):
    dtype, data = c
    enc = E.encode(data, dtype, policy)
    assert not enc.delta
    assert _roundtrip(enc, len(data)) == data


@settings(max_examples=100, deadline=None)
@given(c=chunks(), policy=st.sampled_from(POLICIES), flips=st.integers(0, 5000),
       seed=st.integers(0, 2**32 - 1))
def test_delta_round_trip_is_bit_exact(c, policy, flips, seed):
    dtype, data = c
    rng = np.random.default_rng(seed)
    base = bytearray(data)
    for i in rng.integers(0, max(1, len(base)), min(flips, len(base))):
        base[i] ^= int(rng.integers(1, 256))
    enc = E.encode(data, dtype, policy, base=bytes(base))
    assert _roundtrip(enc, len(data), bytes(base)) == data


@given(c=chunks(), extra=st.integers(1, 9))
@settings(max_examples=40, deadline=None)
def test_base_of_another_length_is_ignored(c, extra):
    dtype, data = c
    enc = E.encode(data, dtype, ALWAYS, base=bytes(len(data) + extra))
    assert not enc.delta
    assert _roundtrip(enc, len(data)) == data


def _gauss32(n: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(n) * 0.02).astype(np.float32)


def test_floats_use_split_streams_and_noise_stays_raw():
    w = _gauss32(1 << 18)
    enc = E.encode(w.tobytes(), "F32", E.POLICIES["fast"])
    assert enc.encoding == E.SPLIT and enc.size < 0.9 * w.nbytes
    noise = np.random.default_rng(1).bytes(1 << 20)
    enc = E.encode(noise, None, E.POLICIES["fast"])
    assert enc.encoding == E.RAW and bytes(enc.parts[0]) == noise


def test_small_change_is_stored_as_delta():
    w = _gauss32(1 << 18)
    w2 = w + _gauss32(1 << 18, 1) * 1e-3
    plain = E.encode(w2.tobytes(), "F32", E.POLICIES["fast"])
    delta = E.encode(w2.tobytes(), "F32", E.POLICIES["fast"], base=w.tobytes())
    assert delta.delta and delta.size < plain.size
    assert _roundtrip(delta, w2.nbytes, w.tobytes()) == w2.tobytes()


@pytest.mark.parametrize("dtype", ["F32", "BF16", "F64", "F8_E4M3", None])
@pytest.mark.parametrize("policy", [E.POLICIES["fast"], ALWAYS])
def test_a_delta_stores_the_bytes_of_its_xor(dtype, policy):
    """A large chunk's delta is XOR-ed block by block inside the split (no chunk-sized XOR
    copy); what it stores is byte for byte the encoding of the XOR itself."""
    w = _gauss32((1 << 18) + 3)
    data = (w + _gauss32(w.size, 1) * 1e-3).tobytes()[:-5]  # a length no width divides
    base = w.tobytes()[:-5]
    delta = E.encode(data, dtype, policy, base=base)
    assert delta.delta
    alone = E.encode(E.xor(data, base), dtype, policy)
    assert (delta.encoding, b"".join(delta.parts)) == (alone.encoding, b"".join(alone.parts))
    assert _roundtrip(delta, len(data), base) == data


def test_off_stores_raw_without_copy():
    data = _gauss32(4096).tobytes()
    enc = E.encode(data, "F32", E.POLICIES["off"], base=data)
    assert enc.encoding == E.RAW and not enc.delta and enc.parts[0].obj is data


def test_unknown_policy_is_invalid_input():
    with pytest.raises(InvalidInputError):
        E.get_policy("turbo")


# -- hostile payloads ------------------------------------------------------------------------
def _encoded_samples() -> list[tuple[E.Encoded, bytes, str | None]]:
    w = _gauss32(5000)
    data = w.tobytes() + b"xyz"  # odd length
    other = bytes(range(256)) * 40
    return [(E.encode(data, "F32", ALWAYS), data, "F32"),
            (E.encode(other, None, ALWAYS), other, None)]


@settings(max_examples=300, deadline=None)
@given(which=st.integers(0, 1), edits=st.lists(st.tuples(st.integers(0, 10**6),
                                                           st.integers(0, 255)), max_size=4),
       cut=st.integers(0, 10**6), size_delta=st.integers(-3, 3))
def test_damaged_payloads_raise_corrupt_or_decode(which, edits, cut, size_delta):
    enc, data, _ = _encoded_samples()[which]
    payload = bytearray(b"".join(bytes(p) for p in enc.parts))
    for pos, val in edits:
        payload[pos % len(payload)] = val
    payload = payload[: max(0, len(payload) - cut % 50)] if cut % 3 == 0 else payload
    size = max(0, len(data) + size_delta)
    try:
        out = E.decode(enc.encoding, bytes(payload), size)
    except CorruptObjectError:
        with pytest.raises(CorruptObjectError):  # block by block too, at some block
            _blocks(enc.encoding, bytes(payload), size, 296)
        return
    assert len(out) == size  # decoded, possibly to wrong bytes: the digest check catches those
    assert _blocks(enc.encoding, bytes(payload), size, 296) == bytes(out)


def test_declared_size_bounds_decoding():
    data = bytes(1 << 20)  # compresses to a few bytes
    enc = E.encode(data, None, E.POLICIES["fast"])
    assert enc.encoding == E.ZSTD and enc.size < 1000
    with pytest.raises(CorruptObjectError):
        E.decode(enc.encoding, bytes(enc.parts[0]), 4096)  # a 4 KiB chunk cannot expand to 1 MiB


def test_unknown_encoding_is_corrupt():
    with pytest.raises(CorruptObjectError):
        E.decode(9, b"abc", 3)


def test_floats_are_rotated_so_the_exponent_is_one_stream():
    w = _gauss32(1 << 16)
    enc = E.encode(w.tobytes(), "F32", ALWAYS)
    head = bytes(enc.parts[0])
    assert enc.encoding == E.SPLIT and head[:2] == bytes((1, 4))  # split format 1: rotated
    exponents = (w.view(np.uint32) >> 23) & 0xFF
    stream3 = enc.parts[4]  # heads, then streams 0..3: stream 3 holds whole exponents
    import zstandard

    got = np.frombuffer(zstandard.ZstdDecompressor().decompress(stream3), np.uint8)
    assert np.array_equal(got, exponents.astype(np.uint8))
    ints = E.encode(np.arange(1 << 14, dtype=np.int32).tobytes(), "I32", ALWAYS)
    assert bytes(ints.parts[0])[:2] == bytes((0, 4))  # integers are not rotated


def _reference_streams(data: bytes, item: int, rotate: bool, base: bytes | None) -> np.ndarray:
    """The split streams by definition: byte k of every (rotated, XOR-ed) value."""
    count = len(data) // item
    v = np.frombuffer(data, E._UINT[item], count).copy()
    if base is not None:
        v ^= np.frombuffer(base, E._UINT[item], count)
    if rotate:
        v = (v << v.dtype.type(1)) | (v >> v.dtype.type(8 * item - 1))
    return v.view(np.uint8).reshape(count, item).T


@settings(max_examples=120, deadline=None)
@given(item=st.sampled_from([2, 4, 8]), rotate=st.booleans(), with_base=st.booleans(),
       offset=st.integers(0, 7), n=st.integers(0, 3 * E._BLOCK * 2 + 50),
       seed=st.integers(0, 2**32 - 1))
def test_split_streams_are_the_bytes_of_each_value(item, rotate, with_base, offset, n, seed):
    """The encoder's shift-and-truncate split gives the streams the format defines, from
    unaligned buffers too, across block boundaries and with a trailing partial value."""
    rng = np.random.default_rng(seed)
    raw = rng.bytes(offset + n)
    data = memoryview(raw)[offset:]  # unaligned like a tensor inside a mapped file
    base = rng.bytes(n) if with_base else None
    want = _reference_streams(bytes(data), item, rotate, base)
    got = np.concatenate([b.copy() for _, b in E._blocks(data, item, rotate, base)], axis=1) \
        if n >= item else np.empty((item, 0), np.uint8)
    assert np.array_equal(got, want)
    into = {k: np.empty(n // item, np.uint8) for k in range(0, item, 2)}  # some go whole
    for i, b in E._blocks(data, item, rotate, base, into=into):
        for k in range(1, item, 2):
            assert np.array_equal(b[k], want[k, i : i + b.shape[1]])
    for k, row in into.items():
        assert np.array_equal(row, want[k])


@pytest.mark.parametrize("item", [2, 3, 4, 8, 16])
def test_unrotated_split_objects_from_before_rotation_still_decode(item):
    """Also any item size the format allows (3 and 16: only a hand-made object has them; block
    by block they do not divide a block, and decode whole)."""
    data = np.random.default_rng(item).bytes(1000 * item + 3)
    count = len(data) // item
    rows = np.frombuffer(data, np.uint8, count * item).reshape(count, item).T
    head = struct.pack("<BB", 0, item) + b"".join(struct.pack("<BI", 0, count) for _ in rows)
    payload = head + b"".join(r.tobytes() for r in rows) + data[count * item :]
    assert bytes(E.decode(E.SPLIT, payload, len(data))) == data
    for step in (8, 296, 1 << 16):
        assert _blocks(E.SPLIT, payload, len(data), step) == data


def test_blocks_refuse_a_base_of_another_length():
    data = _gauss32(5000).tobytes()
    base = bytearray(data)
    base[7] ^= 1
    enc = E.encode(data, "F32", ALWAYS, base=bytes(base))
    assert enc.delta
    payload = b"".join(bytes(p) for p in enc.parts)
    for wrong in (bytes(base[:-4]), bytes(base) + b"1234"):
        with pytest.raises(CorruptObjectError, match="delta base"):
            _blocks(enc.encoding, payload, len(data), 296, wrong)
    assert _blocks(enc.encoding, payload, len(data), 296, bytes(base)) == data


def test_a_stream_the_samples_mispredict_is_stored_raw():
    """Streams planned compressed are compressed as they are split (no uncompressed copy
    kept); one that then does not shrink is split again and stored raw."""
    count = 1 << 18  # 1 MiB of int32: planned from samples
    rng = np.random.default_rng(3)
    values = rng.integers(0, 1 << 16, count, dtype=np.uint32)  # byte 3 zero: compresses
    values |= rng.integers(0, 256, count, dtype=np.uint32) << 16  # byte 2 noise ...
    step = (count * 4 - E.SAMPLE_BYTES) // (E.SAMPLES - 1) // 4
    for i in range(E.SAMPLES):  # ... but not where the predictor samples it
        values[i * step : i * step + E.SAMPLE_BYTES // 4] &= 0xFFFF
    data = values.tobytes()
    methods, _ = E._plan(memoryview(data), 4, False, E.POLICIES["fast"])
    assert methods == [0, 0, 1, 1]  # raw, raw, zstd, zstd as planned
    enc = E.encode(data, "I32", E.POLICIES["fast"])
    assert enc.encoding == E.SPLIT
    heads = bytes(enc.parts[0])
    stored = [struct.unpack_from("<BI", heads, 2 + 5 * k) for k in range(4)]
    assert [m for m, _ in stored] == [0, 0, 0, 1]  # stream 2 raw after all
    assert stored[2][1] == count
    assert _roundtrip(enc, len(data)) == data


@pytest.mark.parametrize("dtype", ["F32", None])
def test_blocks_hold_no_whole_decompressed_stream(dtype):
    """Block by block, compressed streams are decompressed as they are taken: a 16 MiB
    chunk decodes in about a block's memory, not a whole stream's (4 MiB for the exponents
    of 16 MiB of fp32; 16 MiB for zstd over other data), and to the same bytes."""
    import tracemalloc

    if dtype == "F32":
        data = _gauss32(4 << 20).tobytes()
    else:  # compressible bytes that are not floats: whole-chunk zstd
        data = np.random.default_rng(2).integers(0, 16, 16 << 20, dtype=np.uint8).tobytes()
    enc = E.encode(data, dtype, ALWAYS)
    assert enc.encoding == (E.SPLIT if dtype else E.ZSTD)
    payload = b"".join(bytes(p) for p in enc.parts)
    out = bytearray(512 << 10)
    digest = hashlib.blake2b()
    tracemalloc.start()
    try:
        for block in E.decode_blocks(enc.encoding, payload, len(data), out):
            digest.update(block)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert digest.digest() == hashlib.blake2b(data).digest()
    assert peak < 1 << 20, peak
