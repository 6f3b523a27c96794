"""Issue 15 item 9: ``diff --tensors`` matches tensors by name across files (epoch0 ->
epoch1), reports dtype/shape changes, the largest absolute difference and the relative L2
change per changed tensor, and reads only the changed tensors."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest

from casstore import Repository
from casstore.repo.keys import chunk_key
from casstore.testing.stores import CountingStore
from tests.cli_helpers import run

st = pytest.importorskip("safetensors.numpy")


def _save(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    st.save_file(tensors, str(path))
    return path


@pytest.fixture
def two(tmp_path: Path) -> tuple[Repository, dict, dict]:
    rng = np.random.default_rng(0)
    a = {f"layer{i}.weight": rng.standard_normal(64 << 10).astype(np.float32) for i in range(6)}
    b = dict(a)
    b["layer4.weight"] = a["layer4.weight"] + np.float32(0.01) * rng.standard_normal(
        64 << 10).astype(np.float32)
    b["layer5.weight"] = a["layer5.weight"].astype(np.float16)  # dtype change
    b["layer3.weight"] = a["layer3.weight"].reshape(256, 256)  # shape change, same bytes
    repo = Repository(str(tmp_path / "store"))
    repo.commit("m", [_save(tmp_path / "a" / "epoch0.safetensors", a)])
    repo.commit("m", [_save(tmp_path / "b" / "epoch1.safetensors", b)])
    return repo, a, b


def test_diff_tensors_matches_renamed_files_and_measures_changes(two):
    repo, a, b = two
    c = repo.compare("m", "1.0.0", "1.0.1", tensors=True)
    (f,) = c.files
    assert (f.path, f.renamed_from, f.status) == ("epoch1.safetensors", "epoch0.safetensors",
                                                  "changed")
    assert f.tensors.changed == ["layer3.weight", "layer4.weight", "layer5.weight"]
    assert f.tensors.unchanged == 3 and not f.tensors.added and not f.tensors.removed
    got = {t.name: t for t in c.tensor_changes}
    d = b["layer4.weight"].astype(np.float64) - a["layer4.weight"]
    t4 = got["layer4.weight"]
    assert t4.max_abs_diff == pytest.approx(np.abs(d).max())
    assert t4.rel_l2 == pytest.approx(np.linalg.norm(d) / np.linalg.norm(a["layer4.weight"]))
    assert 0.005 < t4.rel_l2 < 0.02
    t5 = got["layer5.weight"]
    assert (t5.dtype_a, t5.dtype_b, t5.max_abs_diff) == ("F32", "F16", None)
    t3 = got["layer3.weight"]
    assert (t3.shape_a, t3.shape_b) == ([65536], [256, 256]) and t3.rel_l2 is None


def test_diff_tensors_reads_only_changed_tensors(two):
    """Only the chunks of tensors whose values are compared are read (a delta-encoded chunk
    also reads its base, which is the same tensor's chunk on the other side)."""
    repo, _, _ = two

    class Keys(CountingStore):
        def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
            read.add(key)
            return super().get(key, start, end)

        def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
            keys = list(keys)
            read.update(keys)
            return super().get_many(keys)

    read: set[str] = set()
    r = Repository(Keys(repo.store))
    versions = [r.get_version("m", v) for v in ("1.0.0", "1.0.1")]
    read.clear()
    r.compare("m", "1.0.0", "1.0.1", tensors=True)
    needed = set()
    for v in versions:
        f = v.manifest.files[0]
        t = next(t for t in f.tensors if t.name == "layer4.weight")  # the one compared
        needed |= {chunk_key(d) for d, off, n in f.chunk_offsets()
                   if off < t.offset + t.length and off + n > t.offset}
    chunks = {k for k in read if k.startswith("chunks/")}
    assert chunks and chunks <= needed, (sorted(chunks), sorted(needed))


def test_diff_tensors_cli(two):
    repo, _, _ = two
    store = repo.store.url
    r = run("diff", "m", "1.0.0", "1.0.1", "--tensors", store=store)
    assert r.code == 0, r.err
    assert "epoch1.safetensors (was epoch0.safetensors)" in r.out
    assert "~ layer4.weight  F32 65536  max abs diff" in r.out and "relative L2 change" in r.out
    assert "~ layer5.weight  F32 65536 -> F16 65536" in r.out
    doc = run("diff", "m", "1.0.0", "1.0.1", "--tensors", "--json", store=store).json()
    assert [t["name"] for t in doc["tensor_changes"]] == ["layer3.weight", "layer4.weight",
                                                          "layer5.weight"]
    assert doc["files"][0]["renamed_from"] == "epoch0.safetensors"
