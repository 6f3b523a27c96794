"""save/load/load_into: bit-exact round trips, layouts, selection, and the stored file."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
safetensors = pytest.importorskip("safetensors")
safetensors_torch = pytest.importorskip("safetensors.torch")

import casstore.torch as ct  # noqa: E402
from casstore import InvalidInputError, NotFoundError, Repository  # noqa: E402
from casstore.store import MemoryStore  # noqa: E402

from .helpers import DTYPES, SHAPES, assert_same, random_tensor  # noqa: E402


def test_import_casstore_does_not_import_torch():
    code = "import casstore, casstore.cli, sys; assert 'torch' not in sys.modules, 'torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def test_round_trip_is_bit_exact(repo, dtype):
    sd = {f"t{i}": random_tensor(dtype, s, seed=i) for i, s in enumerate(SHAPES)}
    sd["transposed"] = random_tensor(dtype, (4, 6), seed=99).t()
    sd["strided"] = random_tensor(dtype, (6, 8), seed=98)[1:5:2, ::3]
    assert not sd["transposed"].is_contiguous() and not sd["strided"].is_contiguous()
    ct.save(sd, repo, "m")
    out = ct.load(repo, "m")
    assert sorted(out) == sorted(sd)
    for name, t in sd.items():
        assert_same(out[name], t, name)


def test_shared_storage_is_saved_once_and_tied_on_load(repo):
    emb = torch.randn(64, 32)
    sd = {"embed.weight": emb, "lm_head.weight": emb, "half": emb[:32], "b": torch.zeros(3)}
    res = ct.save(sd, repo, "m")
    assert res.new_chunks < res.chunks  # the tied copy is the same chunks
    out = ct.load(repo, "m")
    assert out["embed.weight"] is out["lm_head.weight"]
    assert_same(out["half"], emb[:32])
    only = ct.load(repo, "m", keys=["lm_head.weight"])
    assert_same(only["lm_head.weight"], emb)


def test_checkout_is_byte_identical_to_safetensors_save_file(repo, tmp_path):
    sd = {str(d).removeprefix("torch."): random_tensor(d, (3, 2)) for d in DTYPES}
    sd["transposed"] = torch.randn(3, 5).t()
    sd["scalar"] = torch.tensor(1.5)
    ct.save(sd, repo, "m")
    (path,) = repo.checkout("m", "@current", tmp_path / "out")
    ref = tmp_path / "ref.safetensors"
    contiguous = {k: v.contiguous() for k, v in sd.items()}
    safetensors_torch.save_file(contiguous, str(ref), metadata={"format": "pt"})
    assert path.read_bytes() == ref.read_bytes()
    loaded = safetensors_torch.load_file(str(path))
    for name, t in sd.items():
        assert_same(loaded[name], t, name)


def test_safetensors_metadata_is_kept(repo, tmp_path):
    ct.save({"w": torch.zeros(2)}, repo, "m", safetensors_metadata={"note": "hi", "a": "b"})
    (path,) = repo.checkout("m", "@current", tmp_path / "out")
    with safetensors.safe_open(str(path), "pt") as f:
        assert f.metadata() == {"format": "pt", "note": "hi", "a": "b"}


def test_module_save_and_load_into(repo):
    torch.manual_seed(0)
    src = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))
    src(torch.randn(5, 4))  # move the batch-norm running stats
    ct.save(src, repo, "net", metrics={"acc": 0.5})
    dst = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))
    assert ct.load_into(dst, repo, "net") == ([], [])
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert_same(b, a, k)


def test_load_into_strict_and_non_strict(repo):
    ct.save({"0.weight": torch.ones(2, 2), "extra": torch.zeros(1)}, repo, "m")
    mod = torch.nn.Sequential(torch.nn.Linear(2, 2))
    with pytest.raises(InvalidInputError, match=r"missing keys '0\.bias'.*unexpected keys 'extra'"):
        ct.load_into(mod, repo, "m")
    res = ct.load_into(mod, repo, "m", strict=False)
    assert res.missing_keys == ["0.bias"] and res.unexpected_keys == ["extra"]
    assert torch.equal(mod[0].weight, torch.ones(2, 2))


def test_keys_versions_refs_and_map_location(repo):
    ct.save({"a": torch.zeros(2), "b": torch.ones(2)}, repo, "m")
    ct.save({"a": torch.full((2,), 2.0), "b": torch.ones(2)}, repo, "m", ref="canary")
    assert ct.load(repo, "m", "1.0.0", keys=["a"])["a"].tolist() == [0, 0]
    assert ct.load(repo, "m", "canary", keys=["a"])["a"].tolist() == [2, 2]
    assert ct.load(repo, "m", "@current", keys=["a"])["a"].tolist() == [0, 0]
    assert ct.load(repo, "m", "latest")["a"].tolist() == [2, 2]
    assert ct.load(repo, "m", map_location="meta")["b"].device.type == "meta"
    assert ct.stored_names(repo, "m") == ["a", "b"]
    with pytest.raises(NotFoundError, match="no tensor 'c'"):
        ct.load(repo, "m", keys=["c"])
    with pytest.raises(NotFoundError):
        ct.load(repo, "m", "nosuchref")


def test_store_arguments(tmp_path):
    sd = {"x": torch.arange(4)}
    url = str(tmp_path / "s")
    ct.save(sd, url, "m")
    assert ct.load(url, "m")["x"].tolist() == [0, 1, 2, 3]
    mem = MemoryStore()
    ct.save(sd, mem, "m")
    assert ct.load(Repository(mem), "m")["x"].tolist() == [0, 1, 2, 3]


def test_sharded_save_is_one_version_with_an_index(repo, tmp_path):
    sd = {f"layer{i}.weight": torch.randn(64, 64) for i in range(5)}
    res = ct.save(sd, repo, "m", max_shard_size=40_000)
    paths = sorted(f.path for f in res.version.manifest.files)
    assert paths[-1] == "model.safetensors.index.json" and len(paths) == 4
    index = json.loads(repo.open_file("m", "@current", paths[-1]).read())
    assert (
        set(index["weight_map"]) == set(sd) and index["metadata"]["total_size"] == 5 * 64 * 64 * 4
    )
    for name, t in ct.load(repo, "m").items():
        assert_same(t, sd[name], name)
    assert list(ct.load(repo, "m", keys=["layer3.weight"])) == ["layer3.weight"]


def test_committed_hf_sharded_checkpoint(repo, tmp_path):
    """A folder as HF writes it (shards + index + config) committed with repo.commit."""
    sd = {f"h.{i}.w": torch.randn(8, 8) for i in range(4)}
    folder = tmp_path / "ckpt"
    folder.mkdir()
    shards = {"model-00001-of-00002.safetensors": ["h.0.w", "h.1.w"]}
    shards["model-00002-of-00002.safetensors"] = ["h.2.w", "h.3.w"]
    for fname, names in shards.items():
        safetensors_torch.save_file({n: sd[n] for n in names}, str(folder / fname))
    wm = {n: f for f, ns in shards.items() for n in ns}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": wm}))
    (folder / "config.json").write_text("{}")
    repo.commit("hf", [folder])
    out = ct.load(repo, "hf")
    assert sorted(out) == sorted(sd)
    for n, t in sd.items():
        assert_same(out[n], t, n)


def test_torch_save_files_are_loaded_without_unpickling(repo, tmp_path):
    base = torch.randn(6, 8)
    obj = {
        "model": {"w": base, "view": base[1:3, ::2], "t": base.t()},
        "step": 3,
        "bf": torch.randn(4, dtype=torch.bfloat16),
    }
    torch.save(obj, tmp_path / "ckpt.pt")
    torch.save(
        {"old": torch.arange(3)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False
    )
    repo.commit("pt", [tmp_path / "ckpt.pt"])
    out = ct.load(repo, "pt")
    assert sorted(out) == ["bf", "model.t", "model.view", "model.w"]
    assert_same(out["model.view"], base[1:3, ::2])
    assert out["model.t"].stride() == base.t().stride()
    assert (
        out["model.w"].untyped_storage().data_ptr() == out["model.t"].untyped_storage().data_ptr()
    )
    repo.commit("legacy", [tmp_path / "legacy.pt"])
    assert ct.load(repo, "legacy")["old"].tolist() == [0, 1, 2]


def test_refuses_what_safetensors_cannot_hold(repo):
    with pytest.raises(InvalidInputError, match="not a tensor"):
        ct.save({"w": torch.zeros(1), "step": 3}, repo, "m")
    with pytest.raises(InvalidInputError, match="dense"):
        ct.save({"s": torch.zeros(2, 2).to_sparse()}, repo, "m")
    with pytest.raises(InvalidInputError, match="complex128"):
        ct.save({"c": torch.zeros(2, dtype=torch.complex128)}, repo, "m")
    with pytest.raises(InvalidInputError, match=r"\.safetensors"):
        ct.save({"w": torch.zeros(1)}, repo, "m", filename="model.bin")
    assert not repo.store.exists("models/m/versions/1.0.0")


@pytest.mark.s3
def test_round_trip_on_s3(s3_url):
    sd = {"w": random_tensor(torch.bfloat16, (33, 17)), "b": torch.arange(5, dtype=torch.int8)}
    ct.save(sd, s3_url, "m", metrics={"loss": 0.1})
    out = ct.load(s3_url, "m", keys=["w"])
    assert_same(out["w"], sd["w"])
    assert_same(ct.load(s3_url, "m")["b"], sd["b"])
