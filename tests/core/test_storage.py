"""How a version is stored, and savings split into dedup and encoding."""

from __future__ import annotations

from casstore.chunking import encodings as E
from casstore.repo.deltas import DeltaIndex
from casstore.repo.storage import describe_version, savings
from casstore.testing.stores import CountingStore
from tests.core.test_chunk_objects import _file, _manifest, _weights, _write

FAST = E.POLICIES["fast"]


def test_describe_and_savings(tmp_path):
    from casstore.store import open_store

    store = CountingStore(open_store(str(tmp_path / "s")))
    a, b = _weights(0), _weights(1)
    v1 = _file({"a": a, "b": b})
    w1, l1, c1 = _write(store, v1, policy=FAST)
    m1 = _manifest("m.safetensors", v1, w1, l1, c1)
    v2 = _file({"a": a + _weights(2) * 1e-4, "b": b})  # b unchanged: dedup; a: delta
    w2, l2, c2 = _write(store, v2, policy=FAST, deltas=DeltaIndex(m1, FAST),
                        known=m1.chunk_set())
    m2 = _manifest("m.safetensors", v2, w2, l2, c2)

    store.reset()
    info = describe_version(store, m2)
    assert info.objects == len(m2.files[0].object_digests())
    assert store.requests == 2 * info.objects  # a stat and a header read each, no more
    assert info.encodings.get("delta", 0) == info.delta_objects > 0
    assert info.encodings.get("split", 0) > 0 and info.longest_chain == 1
    assert info.delta_bases == info.delta_objects  # each delta needs one chunk of v1
    assert info.stored_bytes < info.chunk_bytes

    s = savings(store, [m1, m2])
    assert s.logical_bytes == len(v1) + len(v2)
    assert s.saved_by_dedup >= len(b) * 4 - 8192  # b is stored once
    assert 0 < s.saved_by_encoding < s.unique_bytes
    inline = {d: x for m in (m1, m2) for f in m.files for d, x in f.inline.items()}
    objects = sum(i.size for i in store.list("chunks/"))
    assert s.stored_bytes == objects + sum(map(len, inline.values()))
