"""Tensor-aware chunking of torch.save archives, and cross-format dedup with safetensors."""

from __future__ import annotations

import zipfile
from collections import OrderedDict

import pytest

from casstore.chunking import detect_layout, make_chunker
from casstore.errors import InvalidInputError

from .helpers import FileReader, cut_offsets, digests, split_file


def _detect(path):
    reader = FileReader(path)
    try:
        return detect_layout(reader, reader.size, path.name)
    finally:
        reader.close()


def _payloads(layout, raw: bytes) -> dict[str, bytes]:
    return {t.name: raw[t.offset : t.offset + t.length] for t in layout.tensors}


def _state_dict(torch, seed=0, layers=4, width=192):
    g = torch.Generator().manual_seed(seed)
    sd = OrderedDict()
    for i in range(layers):
        sd[f"layers.{i}.weight"] = torch.randn(width, width, generator=g)
        sd[f"layers.{i}.bias"] = torch.randn(width, generator=g)
    return sd


def test_same_tensors_same_chunks_across_formats(torch, tmp_path):
    from safetensors.torch import save_file

    sd = _state_dict(torch)
    sd["big"] = torch.randn(700_000, generator=torch.Generator().manual_seed(1))  # 2.8 MB
    torch.save(sd, tmp_path / "m.pt")
    save_file(dict(sd), str(tmp_path / "m.safetensors"), metadata={"format": "pt"})
    chunker = make_chunker("tensor", max_chunk=1 << 20)
    lp, pp = split_file(tmp_path / "m.pt", chunker)
    ls, ps = split_file(tmp_path / "m.safetensors", chunker)
    assert lp.format == "torch-zip"
    assert {t.name for t in lp.tensors} == {t.name for t in ls.tensors} == set(sd)

    def tensor_pieces(layout, pieces):
        starts = {t.offset: t for t in layout.tensors}
        out, cur_end = [], -1
        for off, piece in zip(cut_offsets(pieces), pieces):
            if off in starts:
                cur_end = off + starts[off].length
            if off < cur_end:
                out.append(piece)
        return out

    payload_pt = digests(tensor_pieces(lp, pp))
    payload_st = digests(tensor_pieces(ls, ps))
    assert payload_pt == payload_st
    assert len(payload_pt) == 8 + 3  # eight small tensors, "big" in three pieces
    assert payload_pt <= digests(pp) & digests(ps)


def test_layout_matches_tensor_bytes(torch, tmp_path):
    sd = _state_dict(torch, layers=2)
    torch.save(sd, tmp_path / "m.pt")
    layout, pieces = split_file(tmp_path / "m.pt")
    payloads = _payloads(layout, (tmp_path / "m.pt").read_bytes())
    for name, t in sd.items():
        assert payloads[name] == t.numpy().tobytes()
    cuts = set(cut_offsets(pieces))
    assert all(t.offset in cuts and t.offset + t.length in cuts for t in layout.tensors)


@pytest.mark.parametrize(
    "dtype,expected",
    [
        ("float32", "F32"),
        ("float64", "F64"),
        ("float16", "F16"),
        ("bfloat16", "BF16"),
        ("int64", "I64"),
        ("int32", "I32"),
        ("int16", "I16"),
        ("int8", "I8"),
        ("uint8", "U8"),
        ("bool", "BOOL"),
        ("float8_e4m3fn", "F8_E4M3"),
        ("float8_e5m2", "F8_E5M2"),
        ("uint16", "U16"),
        ("complex64", "C64"),
    ],
)
def test_dtypes(torch, tmp_path, dtype, expected):
    t = (torch.randn(3, 5) * 10).to(getattr(torch, dtype))
    torch.save({"t": t, "scalar": t[0, 0].clone()}, tmp_path / "m.pt")
    layout = _detect(tmp_path / "m.pt")
    info = {x.name: x for x in layout.tensors}
    assert (info["t"].dtype, info["t"].shape) == (expected, (3, 5))
    assert info["scalar"].shape == ()
    raw = (tmp_path / "m.pt").read_bytes()
    assert raw[info["t"].offset : info["t"].offset + info["t"].length] == bytes(
        t.view(torch.uint8).numpy().tobytes()
    )


def test_parameters_nested_dicts_and_plain_values(torch, tmp_path):
    obj = {
        "model": {
            "w": torch.nn.Parameter(torch.randn(4, 4)),
            "frozen": torch.nn.Parameter(torch.ones(2), requires_grad=False),
        },
        "opt": {
            "state": {0: {"exp_avg": torch.zeros(4, 4)}},
            "param_groups": [{"lr": 0.1, "params": [0]}],
        },
        "epoch": 7,
        "loss": 0.25,
        "name": "run-1",
        "tags": ["a", "b"],
        "pair": (1, torch.arange(3)),
        "nothing": None,
        "blob": b"\x00\x01",
        "ids": {1, 2},
    }
    torch.save(obj, tmp_path / "ckpt.ckpt")
    layout, _ = split_file(tmp_path / "ckpt.ckpt")
    assert layout.format == "torch-zip"
    assert [t.name for t in sorted(layout.tensors, key=lambda t: t.name)] == [
        "model.frozen",
        "model.w",
        "opt.state.0.exp_avg",
        "pair.1",
    ]


def test_module_state_dict_and_optimizer(torch, tmp_path):
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2)
    )
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 8)).sum().backward()
    opt.step()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, tmp_path / "c.pth")
    layout, _ = split_file(tmp_path / "c.pth")
    names = {t.name for t in layout.tensors}
    assert {"model.0.weight", "model.1.num_batches_tracked", "opt.state.0.exp_avg_sq"} <= names


def test_views_and_shared_storage(torch, tmp_path):
    base = torch.arange(100, dtype=torch.float32)
    obj = {
        "whole": base,
        "tied": base,
        "slice": base[10:20],
        "strided": base[::2],
        "t": base.view(10, 10).t(),
    }
    torch.save(obj, tmp_path / "v.pt")
    layout, pieces = split_file(tmp_path / "v.pt")
    info = {t.name: t for t in layout.tensors}
    assert set(info) == {"whole", "tied", "slice"}  # non-contiguous views are not listed
    assert info["slice"].offset == info["whole"].offset + 40
    assert info["tied"] == info["whole"].__class__("tied", "F32", (100,), info["whole"].offset, 400)
    assert len(pieces) >= 3


def test_fine_tune_changes_only_changed_tensors(torch, tmp_path):
    sd = _state_dict(torch)
    tuned = OrderedDict(sd)
    tuned["layers.3.weight"] = sd["layers.3.weight"] * 1.01
    tuned["layers.3.bias"] = sd["layers.3.bias"] * 1.01
    torch.save(sd, tmp_path / "a.pt")
    torch.save(tuned, tmp_path / "b.pt")
    _la, pa = split_file(tmp_path / "a.pt")
    lb, pb = split_file(tmp_path / "b.pt")
    new = digests(pb) - digests(pa)
    payload_b = _payloads(lb, (tmp_path / "b.pt").read_bytes())
    changed = digests([payload_b["layers.3.weight"], payload_b["layers.3.bias"]])
    assert changed <= new
    # Besides the two tensors only small zip records (CRCs, serialization id) changed.
    small = new - changed
    assert sum(len(p) for p in pb if digests([p]) <= small) < 4096


def test_legacy_format_is_torch_pickle(torch, tmp_path):
    sd = _state_dict(torch, layers=1)
    sd["p"] = torch.nn.Parameter(torch.randn(3).to(torch.bfloat16))
    torch.save(sd, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    layout, _ = split_file(tmp_path / "old.pt")
    assert layout.format == "torch-pickle"
    assert layout.tensors == ()


def test_prefix_follows_archive_name(torch, tmp_path):
    torch.save({"w": torch.ones(2)}, tmp_path / "weird name.v2.bin")
    names = zipfile.ZipFile(tmp_path / "weird name.v2.bin").namelist()
    assert names[0].endswith("/data.pkl")
    assert [t.name for t in _detect(tmp_path / "weird name.v2.bin").tensors] == ["w"]


def test_sniffed_without_torch_extension(torch, tmp_path):
    torch.save({"w": torch.ones(2)}, tmp_path / "model.weights")
    assert _detect(tmp_path / "model.weights").format == "torch-zip"


def test_truncated_zip_is_refused(torch, tmp_path):
    torch.save(_state_dict(torch, layers=2), tmp_path / "m.pt")
    raw = (tmp_path / "m.pt").read_bytes()
    for cut in (len(raw) - 10, len(raw) // 2, 100):
        (tmp_path / "m.pt").write_bytes(raw[:cut])
        with pytest.raises(InvalidInputError, match=r"m\.pt"):
            _detect(tmp_path / "m.pt")


def test_entry_offsets_past_eof_are_refused(torch, tmp_path):
    """A central directory that claims an entry longer than the file."""
    torch.save({"w": torch.ones(1000)}, tmp_path / "m.pt")
    raw = bytearray((tmp_path / "m.pt").read_bytes())
    zf = zipfile.ZipFile(tmp_path / "m.pt")
    info = next(i for i in zf.infolist() if i.filename.endswith("data/0"))
    cd = zf.start_dir
    pos = raw.index(b"PK\x01\x02" + bytes(raw[cd + 4 : cd + 6]), cd)
    while raw[pos + 46 : pos + 46 + len(info.filename)] != info.filename.encode():
        pos = raw.index(b"PK\x01\x02", pos + 4)
    raw[pos + 20 : pos + 24] = (10**9).to_bytes(4, "little")  # compressed size
    raw[pos + 24 : pos + 28] = (10**9).to_bytes(4, "little")  # uncompressed size
    (tmp_path / "m.pt").write_bytes(bytes(raw))
    with pytest.raises(InvalidInputError, match="past the end"):
        _detect(tmp_path / "m.pt")


def test_compressed_storage_is_refused(torch, tmp_path):
    torch.save({"w": torch.zeros(1000)}, tmp_path / "m.pt")
    src = zipfile.ZipFile(tmp_path / "m.pt")
    with zipfile.ZipFile(tmp_path / "z.pt", "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(
                info.filename,
                src.read(info),
                zipfile.ZIP_STORED if info.filename.endswith(".pkl") else zipfile.ZIP_DEFLATED,
            )
    with pytest.raises(InvalidInputError, match="compressed"):
        _detect(tmp_path / "z.pt")


def test_plain_zip_is_raw(tmp_path):
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as zf:
        zf.writestr("hello.txt", "hi" * 1000)
    assert _detect(tmp_path / "a.zip").format == "raw"
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04" + bytes(100))
    assert _detect(tmp_path / "bad.zip").format == "raw"
    (tmp_path / "zip.pt").write_bytes((tmp_path / "a.zip").read_bytes())
    with pytest.raises(InvalidInputError, match="not a torch file"):
        _detect(tmp_path / "zip.pt")
    (tmp_path / "bad.pt").write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(InvalidInputError, match=r"bad\.pt"):
        _detect(tmp_path / "bad.pt")


def test_many_small_tensors_few_reads(torch, tmp_path):
    sd = {f"t{i}": torch.full((16,), float(i)) for i in range(2000)}
    torch.save(sd, tmp_path / "m.pt")
    reader = FileReader(tmp_path / "m.pt")
    layout = detect_layout(reader, reader.size, "m.pt")
    reader.close()
    assert len(layout.tensors) == 2000
    assert reader.reads < 50
