"""Tensor-aware chunking of safetensors files, and strict header validation."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from casstore.chunking import detect_layout, get_chunker, make_chunker
from casstore.chunking.chunkers import TensorChunker
from casstore.chunking.fastcdc import CDCParams
from casstore.errors import InvalidInputError

from .helpers import FileReader, cut_offsets, split_file


def _save(torch, path, tensors, metadata=None):
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=metadata)
    return path


def _model(torch, seed=0, layers=6, width=256):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for i in range(layers):
        sd[f"layers.{i}.weight"] = torch.randn(width, width, generator=g)
        sd[f"layers.{i}.bias"] = torch.randn(width, generator=g)
    return sd


def test_pieces_cover_file_and_cut_at_tensor_boundaries(torch, tmp_path):
    path = _save(torch, tmp_path / "m.safetensors", _model(torch))
    layout, pieces = split_file(path)
    assert layout.format == "safetensors"
    assert len(layout.tensors) == 12
    cuts = set(cut_offsets(pieces))
    for t in layout.tensors:
        assert t.offset in cuts
        assert t.offset + t.length in cuts | {path.stat().st_size}
    by_name = {t.name: t for t in layout.tensors}
    w = by_name["layers.3.weight"]
    assert (w.dtype, w.shape, w.length) == ("F32", (256, 256), 256 * 256 * 4)


def test_layout_matches_safetensors_library(torch, tmp_path):
    from safetensors import safe_open

    sd = _model(torch, layers=2)
    path = _save(torch, tmp_path / "m.safetensors", sd, metadata={"format": "pt"})
    layout, _ = split_file(path)
    raw = path.read_bytes()
    assert layout.metadata == {"format": "pt"}
    with safe_open(str(path), "pt") as f:
        for t in layout.tensors:
            expected = f.get_tensor(t.name).numpy().tobytes()
            assert raw[t.offset : t.offset + t.length] == expected


def test_changing_metadata_changes_only_header_chunks(torch, tmp_path):
    sd = _model(torch)
    a = _save(torch, tmp_path / "a.safetensors", sd, metadata={"step": "1"})
    b = _save(torch, tmp_path / "b.safetensors", sd, metadata={"step": "2", "note": "x" * 5000})
    la, pa = split_file(a)
    lb, pb = split_file(b)
    assert lb.tensors[0].offset > la.tensors[0].offset  # a longer header shifted everything
    header_a = [p for p, o in zip(pa, cut_offsets(pa)) if o < la.tensors[0].offset]
    header_b = [p for p, o in zip(pb, cut_offsets(pb)) if o < lb.tensors[0].offset]
    assert set(pa) - set(header_a) == set(pb) - set(header_b)
    assert set(pb) - set(pa) <= set(header_b)


def test_fine_tune_of_last_layer_changes_only_its_chunks(torch, tmp_path):
    sd = _model(torch)
    tuned = dict(sd)
    tuned["layers.5.weight"] = sd["layers.5.weight"] + 0.01
    a = _save(torch, tmp_path / "a.safetensors", sd)
    b = _save(torch, tmp_path / "b.safetensors", tuned)
    la, pa = split_file(a)
    _, pb = split_file(b)
    changed = set(pb) - set(pa)
    raw_b = b.read_bytes()
    t = next(t for t in la.tensors if t.name == "layers.5.weight")
    assert changed == {raw_b[t.offset : t.offset + t.length]}


def test_large_tensor_split_at_max_chunk_from_tensor_start(torch, tmp_path):
    big = torch.arange(5 * 65536 + 100, dtype=torch.float32)  # not a multiple of max
    path = _save(torch, tmp_path / "m.safetensors", {"a": torch.ones(3), "big": big})
    chunker = make_chunker("tensor", max_chunk=256 << 10)
    layout, pieces = split_file(path, chunker)
    t = next(t for t in layout.tensors if t.name == "big")
    offsets = cut_offsets(pieces)
    inside = [(o, len(p)) for o, p in zip(offsets, pieces) if t.offset <= o < t.offset + t.length]
    assert [o - t.offset for o, _ in inside] == list(range(0, t.length, 256 << 10))
    assert [n for _, n in inside][:-1] == [256 << 10] * (len(inside) - 1)


def test_reads_are_bounded_for_huge_tensor(torch, tmp_path):
    path = _save(
        torch, tmp_path / "m.safetensors", {"big": torch.zeros(40 << 20, dtype=torch.uint8)}
    )
    reader = FileReader(path)
    _layout, pieces = get_chunker(
        "tensor/max=16777216;fastcdc/avg=65536,min=16384,max=262144"
    ).split(reader, reader.size, path.name)
    sizes = [len(p) for p in pieces]
    reader.close()
    assert reader.largest <= 16 << 20
    assert sizes[1:] == [16 << 20, 16 << 20, 8 << 20]


def test_small_window_gives_same_pieces(torch, tmp_path):
    path = _save(torch, tmp_path / "m.safetensors", _model(torch), metadata={"x": "y" * 100_000})
    cdc = CDCParams.of(4096, 1024, 16384)
    _, a = split_file(path, TensorChunker(65536, cdc))
    _, b = split_file(path, TensorChunker(65536, cdc, window=70_000))
    assert a == b


def test_sniffed_without_extension(torch, tmp_path):
    path = _save(torch, tmp_path / "weights", _model(torch, layers=1))
    layout, _ = split_file(path)
    assert layout.format == "safetensors"


def test_split_raises_before_yielding(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    reader = FileReader(path)
    with pytest.raises(InvalidInputError, match=r"bad\.safetensors"):
        get_chunker("fastcdc/avg=65536,min=16384,max=262144").split(reader, reader.size, path.name)


# -- lying and truncated headers -------------------------------------------------------------


def _write(tmp_path, header: bytes | dict, data: bytes = b"", name="m.safetensors", n=None):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path = tmp_path / name
    path.write_bytes(struct.pack("<Q", len(raw) if n is None else n) + raw + data)
    return path


def _detect(path):
    reader = FileReader(path)
    try:
        return detect_layout(reader, reader.size, path.name)
    finally:
        reader.close()


def _entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


def test_valid_hand_written_header(tmp_path):
    path = _write(tmp_path, {"a": _entry(), "b": _entry("BF16", (2, 2), (8, 16))}, bytes(16))
    layout = _detect(path)
    assert [(t.name, t.offset, t.length) for t in layout.tensors] == [
        ("a", path.stat().st_size - 16, 8),
        ("b", path.stat().st_size - 8, 8),
    ]


@pytest.mark.parametrize(
    "header,data,n,match",
    [
        ({"a": _entry()}, bytes(8), 10**9, "header length"),
        ({"a": _entry()}, bytes(8), 2**64 - 1, "header length"),
        ({"a": _entry()}, bytes(8), 500, "past the end"),
        ({"a": _entry(offsets=(0, 16))}, bytes(8), None, "do not fit"),
        ({"a": _entry(offsets=(8, 4))}, bytes(8), None, "do not fit"),
        ({"a": _entry(offsets=(0, 8)), "b": _entry(offsets=(4, 12))}, bytes(12), None, "overlap"),
        ({"a": _entry(shape=(3,))}, bytes(8), None, "do not hold"),
        ({"a": _entry("F8_E4M3", (9,))}, bytes(8), None, "do not hold"),
        ({"a": _entry(shape=(-1,))}, bytes(8), None, "invalid shape"),
        ({"a": _entry(shape=(2.0,))}, bytes(8), None, "invalid shape"),
        ({"a": {"dtype": "F32", "shape": [2]}}, bytes(8), None, "data_offsets"),
        ({"a": _entry(offsets=(0, 8, 9))}, bytes(8), None, "data_offsets"),
        ({"a": "nope"}, b"", None, "not a JSON object"),
        ({"__metadata__": {"a": 1}}, b"", None, "__metadata__"),
        (b"[1, 2]", b"", None, "not a JSON object"),
        (b'{"a": ', b"", None, "not valid JSON"),
        (b'{"a": 1, "a": 2}', b"", None, "not valid JSON"),
        (b'{"\xff": 1}', b"", None, "not UTF-8"),
        (b"", b"", None, "not valid JSON"),
    ],
)
def test_lying_headers_are_refused(tmp_path, header, data, n, match):
    path = _write(tmp_path, header, data, n=n)
    with pytest.raises(InvalidInputError, match=match) as info:
        _detect(path)
    assert "m.safetensors" in str(info.value)


def test_truncated_real_file_is_refused(torch, tmp_path):
    path = _save(torch, tmp_path / "m.safetensors", _model(torch, layers=2))
    raw = path.read_bytes()
    for cut in (4, 100, len(raw) - 1):
        path.write_bytes(raw[:cut])
        with pytest.raises(InvalidInputError):
            _detect(path)


def test_unknown_dtype_is_accepted_without_size_check(tmp_path):
    path = _write(tmp_path, {"a": _entry("F99", (5,), (0, 3))}, bytes(3))
    assert _detect(path).tensors[0].dtype == "F99"


def test_broken_safetensors_without_extension_is_raw(tmp_path):
    path = _write(tmp_path, {"a": _entry(offsets=(0, 99))}, bytes(8), name="blob")
    assert _detect(path).format == "raw"


def test_empty_and_tiny_files(tmp_path):
    for size in (0, 1, 7):
        path = tmp_path / f"f{size}"
        path.write_bytes(np.random.default_rng(size).bytes(size))
        layout, pieces = split_file(path)
        assert layout.format == "raw"
        assert len(pieces) == (1 if size else 0)
    tiny = tmp_path / "t.safetensors"
    tiny.write_bytes(b"\x00" * 7)
    with pytest.raises(InvalidInputError, match="too short"):
        _detect(tiny)
