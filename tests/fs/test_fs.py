"""casstore:// as an fsspec filesystem: the URL grammar, listing, ranged verified reads,
refused writes, the chained form, registration by entry point, and real readers (pandas,
torch, safetensors) going through fsspec."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import fsspec
import pytest

from casstore import CorruptObjectError, InvalidInputError, Repository
from casstore.fs import CasstoreFileSystem, parse_path, version_spec
from casstore.store import open_store
from casstore.testing.stores import CountingStore
from tests import series


@pytest.fixture
def store_dir(tmp_path: Path) -> str:
    """bert 1.0.0 (production) and 1.1.0 (latest), each with nested folders; tbl 1.0.0."""
    repo = Repository(str(tmp_path / "store"))
    for i, version in enumerate(["1.0.0", "1.1.0"]):
        src = tmp_path / f"bert-{version}"
        series.save(src / "model.safetensors", series.tensors(n=3, size=4096, seed=i))
        (src / "config").mkdir()
        (src / "config" / "a.json").write_text(json.dumps({"version": version}))
        (src / "config" / "deep").mkdir()
        (src / "config" / "deep" / "c.txt").write_text("0123456789" * 3)
        repo.commit("bert", [str(src)], version=version)
    repo.promote("bert", "1.0.0", ref="production")
    repo.promote("bert", "1.1.0", ref="1.0.0")  # a ref named like a version
    (tmp_path / "tbl.csv").write_text("a,b\n1,2\n3,4\n")
    repo.commit("tbl", [str(tmp_path / "tbl.csv")])
    return str(tmp_path / "store")


@pytest.fixture
def fs(store_dir: str) -> CasstoreFileSystem:
    return CasstoreFileSystem(store_dir)


# -- the grammar ---------------------------------------------------------------------------
def test_parse_path() -> None:
    assert parse_path("") == parse_path("") and parse_path("").model is None
    assert (parse_path("bert").model, parse_path("bert").spec) == ("bert", None)
    p = parse_path("bert@production/config/a.json")
    assert (p.model, p.spec, p.inner) == ("bert", "production", "config/a.json")
    assert version_spec("bert", "production") == "@production"
    assert version_spec("bert", "@production") == "@production"
    assert version_spec("bert", "@@x"[1:]) == "@x"
    for spec in ("1.2.0", "v1.2.0", "latest", "bert_v1.2.0_20261128_101500"):
        assert version_spec("bert", spec) == spec


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("bert/model.safetensors", "name a version"),
        ("bert@", "empty version"),
        ("bert@1.2", "malformed version"),
        ("bert@v1.x", "malformed version"),
        ("bert@other_v1.0.0_20261128_101500", "belongs to model"),
        ("bert@1.0.0/../x", "without '.' or '..'"),
        ("bad name@1.0.0", "invalid model name"),
        ("bert@bad!ref", "invalid ref name"),
    ],
)
def test_ambiguous_or_malformed_paths_are_refused(fs, path: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        fs.info(path)


# -- listing -------------------------------------------------------------------------------
def test_ls_models_versions_files(fs: CasstoreFileSystem) -> None:
    assert fs.ls("", detail=False) == ["bert", "tbl"]
    assert fs.ls("casstore://", detail=False) == ["bert", "tbl"]
    assert fs.ls("bert", detail=False) == ["bert@1.0.0", "bert@1.1.0"]
    assert fs.ls("casstore://bert@production", detail=False) == [
        "bert@production/config",
        "bert@production/model.safetensors",
    ]
    listing = fs.ls("bert@1.0.0/config")
    assert [(e["name"], e["type"]) for e in listing] == [
        ("bert@1.0.0/config/deep", "directory"),
        ("bert@1.0.0/config/a.json", "file"),
    ]
    assert fs.ls("bert@1.0.0/config/a.json", detail=False) == ["bert@1.0.0/config/a.json"]


def test_info_and_version_forms(fs: CasstoreFileSystem, store_dir: str) -> None:
    repo = Repository(store_dir)
    v100, v110 = repo.get_version("bert", "1.0.0"), repo.get_version("bert", "1.1.0")
    assert fs.info("")["type"] == "directory"
    assert fs.info("bert")["type"] == "directory"
    forms = {
        "1.0.0": v100, "v1.0.0": v100, v100.name: v100, "@production": v100,
        "production": v100, "latest": v110, "@@1.0.0"[1:]: v110, "1.1.0": v110,
    }  # fmt: skip
    for spec, v in forms.items():
        info = fs.info(f"bert@{spec}")
        assert info["type"] == "directory"
        assert (info["version"], info["version_id"]) == (v.version, v.id.hex())
        f = fs.info(f"bert@{spec}/config/a.json")
        assert f["type"] == "file" and f["version_id"] == v.id.hex()
        assert json.loads(fs.cat(f"bert@{spec}/config/a.json"))["version"] == v.version
    assert fs.info("bert@1.0.0/config/deep") == {
        "name": "bert@1.0.0/config/deep", "type": "directory", "size": 0
    }  # fmt: skip
    assert fs.isdir("bert@1.0.0/config") and fs.isfile("bert@1.0.0/config/deep/c.txt")
    assert fs.size("bert@1.0.0/config/deep/c.txt") == 30
    assert fs.modified("bert@1.0.0/config/a.json") == v100.created_at


def test_find_and_glob(fs: CasstoreFileSystem) -> None:
    files = ["config/a.json", "config/deep/c.txt", "model.safetensors"]
    assert fs.find("bert@latest") == [f"bert@latest/{f}" for f in files]
    assert fs.find("bert@latest", maxdepth=1) == ["bert@latest/model.safetensors"]
    assert fs.glob("bert@1.0.0/**/*.txt") == ["bert@1.0.0/config/deep/c.txt"]
    everything = fs.find("")
    assert "tbl@1.0.0/tbl.csv" in everything
    assert len(everything) == 7  # 3 files x 2 versions of bert + 1


def test_missing_things_are_file_not_found(fs: CasstoreFileSystem) -> None:
    for path in ("nope", "nope@1.0.0", "bert@9.9.9", "bert@nosuchref", "bert@1.0.0/missing",
                 "bert@1.0.0/config/a.json/x"):  # fmt: skip
        with pytest.raises(FileNotFoundError):
            fs.info(path)
        assert not fs.exists(path)
    with pytest.raises(FileNotFoundError):
        fs.open("bert@1.0.0/missing")
    with pytest.raises(IsADirectoryError):
        fs.open("bert@1.0.0/config")


def test_refs_are_resolved_on_every_call(fs: CasstoreFileSystem, store_dir: str) -> None:
    assert json.loads(fs.cat("bert@production/config/a.json"))["version"] == "1.0.0"
    Repository(store_dir).promote("bert", "1.1.0", ref="production")
    assert json.loads(fs.cat("bert@production/config/a.json"))["version"] == "1.1.0"


# -- reading -------------------------------------------------------------------------------
def test_cat_file_ranges_and_seekable_open(fs: CasstoreFileSystem) -> None:
    path = "bert@1.0.0/config/deep/c.txt"
    data = b"0123456789" * 3
    assert fs.cat_file(path) == data
    ranges = [(3, 17), (None, 5), (25, None), (-5, None), (-7, -2), (10, 100), (40, 50), (5, 5)]
    for start, end in ranges:
        assert fs.cat_file(path, start, end) == data[start:end], (start, end)
    with fs.open(path) as f:
        assert f.seekable() and f.size == 30
        f.seek(12)
        assert f.read(5) == data[12:17] and f.tell() == 17
        f.seek(-3, os.SEEK_END)
        assert f.read() == data[-3:]
        assert f.name == f"casstore://{path}"
    with fs.open(path, "r") as f:  # text mode through fsspec's wrapper
        assert f.read() == data.decode()


def test_every_read_is_verified(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    src = series.save(tmp_path / "w.safetensors", series.tensors(n=2, size=64 << 10))
    Repository(store).commit("m", [str(src)])
    chunks = list(store.list("chunks/"))
    assert chunks
    for info in chunks:
        raw = bytearray(store.get(info.key))
        raw[-1] ^= 0xFF
        store.put(info.key, bytes(raw))
    with pytest.raises(CorruptObjectError):
        CasstoreFileSystem(store).cat("m@1.0.0/w.safetensors")


def test_writes_are_refused(fs: CasstoreFileSystem, tmp_path: Path) -> None:
    local = tmp_path / "x.txt"
    local.write_text("x")
    path = "bert@1.0.0/new.txt"
    for call in (
        lambda: fs.open(path, "wb"),
        lambda: fs.open(path, "w"),
        lambda: fs.open("bert@1.0.0/config/a.json", "ab"),
        lambda: fs.pipe(path, b"x"),
        lambda: fs.touch(path),
        lambda: fs.mkdir("bert@1.0.0/dir"),
        lambda: fs.makedirs("bert@1.0.0/dir"),
        lambda: fs.rm("bert@1.0.0/config/a.json"),
        lambda: fs.rm_file("bert@1.0.0/config/a.json"),
        lambda: fs.rmdir("bert@1.0.0/config"),
        lambda: fs.mv("bert@1.0.0/config/a.json", "bert@1.0.0/b.json"),
        lambda: fs.cp("bert@1.0.0/config/a.json", "bert@1.0.0/b.json"),
        lambda: fs.put(str(local), path),
    ):
        with pytest.raises(PermissionError, match="read-only"):
            call()
    assert fs.find("bert@1.0.0") == fs.find("bert@1.0.0")  # nothing appeared
    assert not fs.exists(path)


# -- naming the store ----------------------------------------------------------------------
def test_store_from_option_env_and_chained_url(store_dir: str, monkeypatch, tmp_path) -> None:
    url = "casstore://tbl@1.0.0/tbl.csv"
    expected = b"a,b\n1,2\n3,4\n"
    with fsspec.open(url, store=store_dir) as f:
        assert f.read() == expected
    monkeypatch.setenv("CASSTORE_STORE", store_dir)
    with fsspec.open(url) as f:
        assert f.read() == expected
    monkeypatch.setenv("CASSTORE_STORE", str(tmp_path / "elsewhere"))
    with pytest.raises(FileNotFoundError):  # not cached: the new $CASSTORE_STORE counts
        fsspec.open(url).open()
    for chained in (f"{url}::{store_dir}", f"{url}::file://{store_dir}"):
        with fsspec.open(chained) as f:
            assert f.read() == expected
        fs, path = fsspec.url_to_fs(chained)
        assert isinstance(fs, CasstoreFileSystem) and path == "tbl@1.0.0/tbl.csv"
    with pytest.raises(InvalidInputError, match="named twice"):
        fsspec.open(f"{url}::{store_dir}", store=store_dir).open()


@pytest.mark.s3
def test_chained_url_to_s3(s3_url: str, tmp_path: Path) -> None:
    src = tmp_path / "w.safetensors"
    series.save(src, series.tensors(n=2, size=1024))
    Repository(s3_url).commit("bert", [str(src)], version="1.2.0")
    url = f"casstore://bert@1.2.0/w.safetensors::{s3_url}"
    with fsspec.open(url) as f:
        assert f.read() == src.read_bytes()
    assert fsspec.filesystem("casstore", store=s3_url).ls("bert", detail=False) == ["bert@1.2.0"]


def test_registered_by_entry_point_without_import(store_dir: str) -> None:
    """A fresh interpreter: fsspec finds the protocol through the ``fsspec.specs`` entry
    point (pyproject.toml) and imports casstore only when a casstore:// URL is opened."""
    code = (
        "import sys, fsspec\n"
        "assert 'casstore' not in sys.modules, 'imported before use'\n"
        "with fsspec.open('casstore://tbl@latest/tbl.csv', 'rt') as f:\n"
        "    print(f.read(), end='')\n"
        "assert 'casstore.fs' in sys.modules\n"
    )
    env = {**os.environ, "CASSTORE_STORE": store_dir}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "a,b\n1,2\n3,4\n"


# -- real readers --------------------------------------------------------------------------
def test_pandas_reads_a_csv_version(store_dir: str) -> None:
    pd = pytest.importorskip("pandas")
    df = pd.read_csv("casstore://tbl@latest/tbl.csv", storage_options={"store": store_dir})
    assert df.to_dict("list") == {"a": [1, 3], "b": [2, 4]}


def test_safetensors_file_through_fsspec(store_dir: str, tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    from safetensors.numpy import load

    with fsspec.open("casstore://bert@production/model.safetensors", store=store_dir) as f:
        loaded = load(f.read())
    expected = series.tensors(n=3, size=4096, seed=0)
    assert set(loaded) == set(expected)
    for name, raw in expected.items():
        assert loaded[name].tobytes() == raw and loaded[name].dtype == np.float32


@pytest.mark.torch
def test_torch_load_through_fsspec(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    sd = {"w": torch.randn(64, 32), "b": torch.arange(10), "h": torch.randn(5).half()}
    torch.save(sd, tmp_path / "model.pt")
    repo = Repository(str(tmp_path / "store"))
    repo.commit("net", [str(tmp_path / "model.pt")])
    with fsspec.open("casstore://net@current/model.pt", store=repo) as f:
        loaded = torch.load(f, map_location="cpu", weights_only=True)
    assert loaded.keys() == sd.keys()
    for k in sd:
        assert torch.equal(loaded[k], sd[k])


def test_one_tensor_range_reads_about_its_chunk_bytes(tmp_path: Path) -> None:
    """Reading one tensor's bytes through fsspec fetches that tensor's chunks, nothing else
    (counted by a CountingStore under the filesystem)."""
    tensors = series.tensors(n=8, size=256 << 10, seed=5)
    src = series.save(tmp_path / "model.safetensors", tensors)
    store = CountingStore(open_store(str(tmp_path / "store")))
    repo = Repository(store)
    repo.commit("m", [str(src)])
    fs = CasstoreFileSystem(store)
    with fs.open("m@1.0.0/model.safetensors") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        begin, end = header["layers.5.weight"]["data_offsets"]
        store.reset()
        f.seek(8 + n + begin)
        data = f.read(end - begin)
        counts, bytes_read = store.counts(), store.bytes_read
        gets = sum(counts[op].requests for op in ("get", "get_many") if op in counts)
    assert data == tensors["layers.5.weight"]
    entry = repo.get_version("m", "1.0.0").manifest.file("model.safetensors")
    chunks = f.chunks_for_range(8 + n + begin, 8 + n + end)
    chunk_bytes = sum(store.inner.stat(k.key).size for k in store.inner.list("chunks/")
                      if k.key.rsplit("/", 1)[-1] in {d.hex() for d in chunks})  # fmt: skip
    assert len(chunks) >= 1 and chunk_bytes >= end - begin
    assert gets == len(chunks)
    assert bytes_read == chunk_bytes  # exactly the tensor's chunks
    assert chunk_bytes <= (end - begin) * 1.01 + 512
    assert entry.size > 7 * (end - begin)  # and the file is much bigger than what was read
