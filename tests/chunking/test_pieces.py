"""The plan-to-pieces engine: coverage, bounded reads, laziness, buffers never reused."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casstore.chunking import get_chunker, make_chunker
from casstore.chunking.fastcdc import CDCParams
from casstore.chunking.pieces import CDC, Region, cover, iter_pieces
from casstore.errors import InvalidInputError

from .helpers import FileReader, cut_offsets


def test_cover_plans_gaps_and_merges_overlaps():
    plan = cover(100, [(10, 20), (20, 30), (50, 60), (55, 70), (80, 80)], 8)
    assert plan == [
        Region(0, 10, CDC),
        Region(10, 20, 8),
        Region(20, 30, 8),
        Region(30, 50, CDC),
        Region(50, 70, 8),
        Region(70, 100, CDC),
    ]
    assert cover(0, [], 8) == []
    assert cover(10, [(0, 10)], 4) == [Region(0, 10, 4)]


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(0, 5000),
    ranges=st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 300)), max_size=20),
    step=st.integers(1, 500),
    window=st.integers(4096, 9000),
)
def test_pieces_cover_any_plan_exactly(size, ranges, step, window):
    data = np.random.default_rng(size).bytes(size)
    payloads = [(a, min(a + n, size)) for a, n in ranges if a < size]
    plan = cover(size, payloads, step)
    reads = []

    def read_at(offset, length):
        reads.append(length)
        return data[offset : offset + length]

    cutter = CDCParams.of(1024, 256, 4096).cutter()
    pieces = list(iter_pieces(read_at, plan, cutter, window))
    assert b"".join(pieces) == data
    assert all(len(p) for p in pieces)
    assert max(reads, default=0) <= window
    cuts = set(cut_offsets(pieces))
    for start, end in payloads:
        if end > start and not any(a < start < b for a, b in payloads):
            assert start in cuts


def test_iteration_is_lazy_and_pieces_stay_valid(tmp_path):
    data = np.random.default_rng(1).bytes(3 << 20)
    path = tmp_path / "blob"
    path.write_bytes(data)
    reader = FileReader(path)
    chunker = get_chunker("fixed/size=65536")
    _, pieces = chunker.split(reader, reader.size, "blob")
    reads_after_parse = reader.reads
    kept = list(pieces)  # held memoryviews: no buffer may have been reused under them
    assert reader.reads > reads_after_parse
    assert b"".join(bytes(p) for p in kept) == data
    assert all(isinstance(p, memoryview) for p in kept)
    reader.close()


def test_short_read_is_an_error():
    data = bytes(100_000)
    chunker = make_chunker("fastcdc")

    def short(offset, length):
        return data[offset : offset + length - 1]

    with pytest.raises(InvalidInputError, match="file changed"):
        _layout, pieces = chunker.split(short, len(data), "x.bin")
        list(pieces)


def test_file_shorter_than_claimed_size():
    data = bytes(1000)
    with pytest.raises(InvalidInputError):
        _, pieces = make_chunker().split(lambda o, n: data[o : o + n], 2000, "x")
        list(pieces)


@pytest.mark.parametrize("size", [-1, 1.5, None, True])
def test_invalid_size(size):
    with pytest.raises(InvalidInputError):
        make_chunker().split(lambda o, n: b"", size)


@pytest.mark.parametrize("max_chunk", [0, 100, 32 << 20])
def test_invalid_piece_sizes(max_chunk):
    with pytest.raises(InvalidInputError):
        make_chunker("tensor", max_chunk=max_chunk)
    with pytest.raises(InvalidInputError):
        make_chunker("fixed", max_chunk=max_chunk)
