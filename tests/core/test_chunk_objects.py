"""Chunk objects with encodings: the writer stores split/zstd/delta objects, the reader decodes
and verifies them, hostile objects are refused within a fixed memory bound."""

from __future__ import annotations

import numpy as np
import pytest

from casstore.chunking import encodings as E
from casstore.chunking import get_chunker
from casstore.digest import Digest
from casstore.errors import CorruptObjectError, NotFoundError
from casstore.repo.chunks import (
    ENC_DELTA,
    ENC_RAW,
    ENC_SPLIT,
    HEAD_READ,
    MAX_CHAIN,
    ChunkReader,
    ChunkWriter,
    decode_chunk,
    encode_chunk,
    encoded_parts,
    parse_header,
)
from casstore.repo.deltas import DeltaIndex
from casstore.repo.keys import chunk_key
from casstore.repo.manifest import FileEntry, Manifest, TensorEntry
from casstore.store import open_store
from casstore.store.memory import MemoryStore
from tests.fixtures.make_v1_store import _safetensors

FAST = E.POLICIES["fast"]
safetensors_bytes = _safetensors  # the hand-written writer the fixture store was made with


def _weights(seed: int, n: int = 1 << 16) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(n) * 0.02).astype(np.float32)


def _file(tensors: dict[str, np.ndarray]) -> bytes:
    return safetensors_bytes({k: ("F32", v.shape, v.tobytes()) for k, v in tensors.items()})


def _write(store, data: bytes, name: str = "m.safetensors", **kw):
    w = ChunkWriter(store, **kw)
    layout, chunks = w.add_file(get_chunker("tensor/max=65536;fastcdc/avg=16384,min=4096,"
                                            "max=65536"), lambda o, n: data[o : o + n],
                                len(data), name)
    w.close()
    return w, layout, chunks


def _manifest(name: str, data: bytes, w: ChunkWriter, layout, chunks) -> Manifest:
    import datetime as dt

    entry = FileEntry(
        path=name, size=len(data), format=layout.format, chunker="x",
        chunks=tuple((bytes(d), n) for d, n in chunks),
        tensors=tuple(TensorEntry(name=t.name, dtype=t.dtype, shape=t.shape, offset=t.offset,
                                  length=t.length) for t in layout.tensors),
        inline={bytes(d): w.inline[d] for d, _ in chunks if d in w.inline},
        deltas=w.deltas_of(chunks),
    )
    return Manifest(model="m", version="1.0.0", name="m_v1.0.0_x",
                    created_at=dt.datetime.now(dt.timezone.utc), files=(entry,))


def _read_all(store, chunks, w: ChunkWriter) -> bytes:
    r = ChunkReader(store)
    inline = {d: w.inline[d] for d, _ in chunks if d in w.inline}
    return b"".join(inline[d] if d in inline else bytes(r.read(d, n)) for d, n in chunks)


@pytest.fixture
def store(tmp_path):
    s = open_store(str(tmp_path / "s"))
    yield s
    s.close()


def test_policy_off_writes_raw_objects_as_before(store):
    data = _file({"w": _weights(0)})
    w, _, chunks = _write(store, data)
    for d, n in chunks:
        if n > 4096:
            raw = store.get(chunk_key(d))
            assert raw[:5] == b"CSC\x01\x00" and len(raw) == n + 5
    assert _read_all(store, chunks, w) == data


def test_fast_policy_stores_floats_as_split_streams(store):
    data = _file({"a": _weights(0), "b": _weights(1)})
    w, _, chunks = _write(store, data, policy=FAST)
    heads = [parse_header(store.get(chunk_key(d))) for d, n in chunks if n > 4096]
    assert heads and all(h.encoding == ENC_SPLIT for h in heads)
    assert w.stats.stored_bytes < 0.9 * w.stats.new_bytes
    assert _read_all(store, chunks, w) == data


def test_changed_tensor_is_a_delta_against_the_parent_chunk(store):
    a, b = _weights(0), _weights(1)
    v1 = _file({"a": a, "b": b})
    w1, lay1, ch1 = _write(store, v1, policy=FAST)
    parent = _manifest("m.safetensors", v1, w1, lay1, ch1)
    a2 = a + _weights(2) * 1e-3  # every value moves a little
    v2 = _file({"a": a2, "b": b})
    w2, lay2, ch2 = _write(store, v2, policy=FAST, deltas=DeltaIndex(parent, FAST),
                           known=parent.chunk_set())
    deltas = w2.deltas_of(ch2)
    assert deltas, "the changed tensor was not stored as a delta"
    parent_chunks = {d for d, _ in parent.files[0].chunks}
    for d, chain in deltas.items():
        assert parse_header(store.get(chunk_key(Digest(d)))).encoding == ENC_DELTA
        assert chain[0] in parent_chunks and len(chain) == 1
    assert _read_all(store, ch2, w2) == v2
    child = _manifest("m.safetensors", v2, w2, lay2, ch2)
    assert {Digest(c) for chain in deltas.values() for c in chain} <= child.chunk_set()


def test_chains_are_capped_by_the_policy(store):
    policy = E.Policy("test", max_chain=2)
    a = _weights(0)
    parent = None
    depths = []
    for step in range(6):
        a = a + _weights(10 + step) * 1e-3
        data = _file({"a": a})
        w, lay, ch = _write(store, data, policy=policy,
                            deltas=DeltaIndex(parent, policy) if parent else None)
        parent = _manifest("m.safetensors", data, w, lay, ch)
        chains = list(w.deltas_of(ch).values())
        depths.append(max((len(c) for c in chains), default=0))
        assert _read_all(store, ch, w) == data
    assert depths == [0, 1, 2, 0, 1, 2]  # a keyframe once the chain would pass the cap


def test_dtype_or_shape_change_is_not_a_delta(store):
    a = _weights(0)
    v1 = _file({"a": a})
    w1, lay1, ch1 = _write(store, v1, policy=FAST)
    parent = _manifest("m.safetensors", v1, w1, lay1, ch1)
    for other in (safetensors_bytes({"a": ("F32", (256, 256), (a + 1e-4).tobytes())}),
                  safetensors_bytes({"a": ("I32", (1 << 16,), (a + 1e-4).tobytes())})):
        w2, _, ch2 = _write(store, other, policy=FAST, deltas=DeltaIndex(parent, FAST))
        assert not w2.deltas_of(ch2)
        assert _read_all(store, ch2, w2) == other


def test_missing_base_is_reported_as_missing(store):
    a = _weights(0)
    v1 = _file({"a": a})
    w1, lay1, ch1 = _write(store, v1, policy=FAST)
    parent = _manifest("m.safetensors", v1, w1, lay1, ch1)
    v2 = _file({"a": a + _weights(1) * 1e-4})
    w2, _, ch2 = _write(store, v2, policy=FAST, deltas=DeltaIndex(parent, FAST))
    for chain in w2.deltas_of(ch2).values():
        store.delete(chunk_key(Digest(chain[0])))
    with pytest.raises(NotFoundError, match="delta base"):
        _read_all(store, ch2, w2)


# -- hostile objects -----------------------------------------------------------------------
def _delta_object(size: int, base: Digest, inner: bytes) -> bytes:
    enc = E.Encoded(ENC_RAW, True, (inner,))
    return bytes(encoded_parts(enc, size, (base,)))


def test_delta_cycle_is_corrupt_not_a_recursion_error():
    store = MemoryStore()
    a, b = Digest.of(b"a" * 5000), Digest.of(b"b" * 5000)
    store.put(chunk_key(a), _delta_object(5000, b, bytes(5000)))
    store.put(chunk_key(b), _delta_object(5000, a, bytes(5000)))
    with pytest.raises(CorruptObjectError):
        ChunkReader(store).read(a, 5000)


def test_declared_size_larger_than_manifest_is_refused():
    data = bytes(1 << 20)
    d = Digest.of(data)
    raw = encode_chunk(data, E.encode(data, None, FAST))
    with pytest.raises(CorruptObjectError, match="declares"):
        decode_chunk(raw, d, size=4096)
    with pytest.raises(CorruptObjectError, match="declares"):  # no size: the global bound
        decode_chunk(raw[:5] + (1 << 30).to_bytes(4, "little") + raw[9:], d)
    assert bytes(decode_chunk(raw, d, size=len(data))) == data


def test_delta_without_base_reader_and_bad_headers_are_corrupt():
    d = Digest.of(b"x")
    with pytest.raises(CorruptObjectError):
        decode_chunk(_delta_object(5000, Digest.of(b"y"), bytes(5000)), d)
    for bad in (b"", b"CSC\x01", b"CSC\x01\x09abc", b"CSC\x01\x03\x00", b"XXXX\x00abc",
                b"CSC\x01\x03" + (10).to_bytes(4, "little") + bytes([0, MAX_CHAIN + 1])):
        with pytest.raises(CorruptObjectError):
            decode_chunk(bad, d)


def test_header_fits_in_one_small_read():
    chain = tuple(Digest.of(bytes([i])) for i in range(MAX_CHAIN))
    raw = _delta_object(5000, chain[0], bytes(5000))
    head = bytes(encoded_parts(E.Encoded(ENC_RAW, True, (b"",)), 5000, chain))
    assert len(head) <= HEAD_READ
    assert parse_header(head).chain == chain
    assert parse_header(raw[:HEAD_READ]).chain == (chain[0],)


def _digests(n: int, seed: int = 0) -> list[Digest]:
    return [Digest.of(f"{seed}-{i}".encode()) for i in range(n)]


@pytest.mark.parametrize("seed", range(5))
def test_delta_rounds_yield_each_chunk_once_every_delta_a_batch_after_its_base(seed):
    """Random forests of delta chains (and a chain that loops, as a damaged store may hold):
    every chunk comes exactly once, a delta in a later batch than its base, batches stay
    within the byte limit unless one chunk alone exceeds it."""
    from casstore.repo.deltas import delta_children, delta_rounds, depth_order

    rng = np.random.default_rng(seed)
    ds = _digests(60, seed)
    chains: dict[Digest, tuple[Digest, ...]] = {}
    for i, d in enumerate(ds[10:], 10):  # each later chunk maybe a delta of an earlier one
        if rng.random() < 0.7:
            base = ds[int(rng.integers(0, i))]
            chains[d] = (base, *chains.get(base, ()))
    loop = _digests(2, 99 + seed)
    chains[loop[0]], chains[loop[1]] = (loop[1],), (loop[0],)
    items = depth_order([*ds, *loop], chains)
    sizes = {d: int(rng.integers(1, 10)) << 20 for d in items}
    batches = list(delta_rounds(items, sizes, 16 << 20, delta_children(items, chains)))
    flat = [d for b in batches for d in b]
    assert sorted(flat) == sorted(items)  # once each, none dropped
    where = {d: i for i, b in enumerate(batches) for d in b}
    for d, chain in chains.items():
        if d not in loop:
            assert where[chain[0]] < where[d]
    assert all(len(b) == 1 or sum(sizes[d] for d in b) <= 16 << 20 for b in batches)


class _Remote(MemoryStore):
    """A store whose objects are fetched whole (``get``), as from a bucket."""

    import dataclasses as _dc

    capabilities = _dc.replace(MemoryStore.capabilities, local=False)


@pytest.mark.parametrize("where", ["local", "remote"])
@pytest.mark.parametrize("base_is", ["object", "inline", "raw object", "delta object"])
def test_read_blocks_gives_what_read_gives_whatever_the_base_is(tmp_path, base_is, where):
    """Block by block (a delta next to its base) equals the whole-chunk read, for a base
    stored split, stored raw, itself a delta (decoded whole), or known only inline; objects
    read into the buffers (local) or fetched whole (remote)."""
    from casstore.repo.chunks import BaseBuffers, BlockBuffers

    store = open_store(str(tmp_path / "s")) if where == "local" else _Remote()
    root = _weights(1).tobytes()
    base = (np.frombuffer(root, np.float32) + _weights(2) * 1e-3).astype(np.float32).tobytes()
    data = (np.frombuffer(base, np.float32) + _weights(3) * 1e-3).astype(np.float32).tobytes()
    always = E.Policy("always", keep_below=2.0, max_chain=8)
    bd, dd, rd = Digest.of(base), Digest.of(data), Digest.of(root)
    reader = ChunkReader(store)
    if base_is == "object":
        store.put(chunk_key(bd), encode_chunk(base, E.encode(base, "F32", always)))
    elif base_is == "raw object":
        store.put(chunk_key(bd), encode_chunk(base))
    elif base_is == "delta object":
        store.put(chunk_key(rd), encode_chunk(root))
        enc = E.encode(base, "F32", always, root)
        assert enc.delta
        store.put(chunk_key(bd), encode_chunk(base, enc, [rd]))
    else:
        reader.remember_verified({bd: memoryview(base)})
    enc = E.encode(data, "F32", always, base)
    assert enc.delta
    store.put(chunk_key(dd), encode_chunk(data, enc, [bd] + ([rd] if "delta" in base_is else [])))
    bufs = BlockBuffers(len(data), BaseBuffers(len(data), block=4096))
    bufs.out = bytearray(4096)
    blocks = [bytes(b) for b in reader.read_blocks(dd, len(data), bufs)]
    assert len(blocks) == len(data) // 4096 and b"".join(blocks) == data
    assert bytes(reader.read(dd, len(data))) == data
    assert not bufs.base.lock.locked()
    if where == "remote":  # nothing was read into a buffer there
        assert bufs._object is None and bufs.base._object is None
