"""Issue 2's acceptance check on real torch checkpoints: stored bytes within 1% of the unique
tensor bytes, and every version checks out byte-identical."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from casstore import Repository

pytest.importorskip("torch")
pytest.importorskip("safetensors")


def test_series_stores_unique_tensor_bytes(tmp_path: Path):
    from benchmarks.series import SERIES_CORE, make_series

    series = make_series(tmp_path / "series", 8, SERIES_CORE)
    assert set(series["files"]) == {"base", "finetune", "finetune.pt", "finetune_meta", "adapter"}
    repo = Repository(str(tmp_path / "store"))
    for name, path in series["files"].items():
        repo.commit("series", [path], change_log=name)
    st = repo.stats().to_dict()
    unique = series["unique_tensor_bytes"]
    assert unique <= st["unique_bytes"] <= 1.01 * unique, (st["unique_bytes"], unique)
    assert st["encoded_bytes"] <= st["unique_bytes"]  # encodings store less, never more
    for v, path in zip(repo.history("series"), series["files"].values(), strict=True):
        out = tmp_path / "out" / v.version
        repo.checkout("series", v.version, out)
        got = hashlib.sha256((out / Path(path).name).read_bytes()).hexdigest()
        assert got == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    # the .pt re-save of the fine-tune shares every tensor chunk with the safetensors file
    c = repo.compare("series", "1.0.1", "1.0.2")
    assert c.bytes_new < 64 << 10
