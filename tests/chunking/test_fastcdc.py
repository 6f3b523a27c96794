"""FastCDC streaming: golden cut points, and cuts independent of the read window."""

from __future__ import annotations

import blake3
import numpy as np
import pyfastcdc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casstore.chunking import make_chunker
from casstore.chunking.chunkers import FastCDCChunker
from casstore.chunking.fastcdc import CDCParams, cut_stream
from casstore.errors import InvalidInputError

from .helpers import cut_offsets, split_file

DATA = np.random.default_rng(0).bytes(4 << 20)


def _memory_read_at(data: bytes):
    view = memoryview(data)
    return lambda offset, length: bytes(view[offset : offset + length])


def _whole_buffer_offsets(data: bytes, params: CDCParams) -> list[int]:
    return [chunk.offset for chunk in params.cutter().cut_buf(data)]


def _stream_offsets(data: bytes, params: CDCParams, window: int) -> list[int]:
    pieces = cut_stream(params.cutter(), _memory_read_at(data), 0, len(data), window)
    return cut_offsets([bytes(p) for p in pieces])


def test_golden_cut_points_default_params():
    """Pinned: a change here changes every stored chunk; make it deliberate."""
    offsets = _stream_offsets(DATA, CDCParams(), 16 << 20)
    assert len(offsets) == 53
    assert offsets[:8] == [0, 155237, 205962, 280441, 348201, 529230, 600786, 641969]
    pinned = "4f251c540512759eb6246e53c5ce1268b4de9ddf5bd5dfcf38e9d4f6e0588cb8"
    assert blake3.blake3(",".join(map(str, offsets)).encode()).hexdigest() == pinned


def test_golden_matches_pyfastcdc_whole_buffer():
    assert _stream_offsets(DATA, CDCParams(), 16 << 20) == _whole_buffer_offsets(DATA, CDCParams())


@pytest.mark.parametrize("window", [262144, 262145, 300_000, 1 << 20, 3_000_001, 16 << 20])
def test_window_size_does_not_change_cuts(window):
    params = CDCParams()
    assert _stream_offsets(DATA, params, window) == _whole_buffer_offsets(DATA, params)


def test_window_smaller_than_max_is_refused():
    with pytest.raises(InvalidInputError):
        list(cut_stream(CDCParams().cutter(), _memory_read_at(DATA), 0, len(DATA), 1000))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    length=st.integers(0, 60_000),
    window=st.integers(4096, 20_000),
    repetitive=st.booleans(),
)
def test_streamed_cuts_equal_whole_buffer_cuts(seed, length, window, repetitive):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 4, length, dtype=np.uint8).tobytes() if repetitive else rng.bytes(length)
    params = CDCParams.of(1024, 256, 4096)
    assert _stream_offsets(data, params, window) == _whole_buffer_offsets(data, params)


def test_region_restricted_cutting_starts_at_region():
    """Cutting a region equals cutting its bytes alone (what headers and gaps rely on)."""
    params = CDCParams.of(1024, 256, 4096)
    start, end = 12_345, 200_000
    pieces = cut_stream(params.cutter(), _memory_read_at(DATA), start, end, 10_000)
    offsets = cut_offsets([bytes(p) for p in pieces])
    assert offsets == _whole_buffer_offsets(DATA[start:end], params)


def test_fastcdc_chunker_on_real_file(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(DATA)
    small_window = FastCDCChunker(CDCParams(), window=300_000)
    layout, pieces = split_file(path, small_window)
    assert layout.format == "raw"
    assert cut_offsets(pieces) == _whole_buffer_offsets(DATA, CDCParams())
    _, default_pieces = split_file(path, make_chunker("fastcdc"))
    assert default_pieces == pieces


def test_fastcdc_is_content_defined(tmp_path):
    """Inserting bytes near the start leaves most later chunks unchanged."""
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(DATA)
    b.write_bytes(DATA[:1000] + b"inserted" + DATA[1000:])
    _, pa = split_file(a, "fastcdc/avg=65536,min=16384,max=262144")
    _, pb = split_file(b, "fastcdc/avg=65536,min=16384,max=262144")
    assert len(set(pa) & set(pb)) >= len(pa) - 2


def test_fixed_chunker(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(DATA[: 3 * 65536 + 17])
    _, pieces = split_file(path, make_chunker("fixed", max_chunk=65536))
    assert [len(p) for p in pieces] == [65536, 65536, 65536, 17]


@pytest.mark.parametrize(
    "avg,lo,hi", [(100, None, None), (65536, 70000, None), (65536, None, 32 << 20), (True, 1, 2)]
)
def test_invalid_cdc_params(avg, lo, hi):
    with pytest.raises(InvalidInputError):
        make_chunker("fastcdc", cdc_avg=avg, cdc_min=lo, cdc_max=hi)


def test_pyfastcdc_is_the_compiled_one():
    assert "cy" in type(pyfastcdc.FastCDC(65536)).__module__
