"""benchmarks.training.stream_entropy: the bound the training-run targets are reported with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.training import stream_entropy

st = pytest.importorskip("safetensors.numpy")


def _save(path: Path, **tensors: np.ndarray) -> str:
    st.save_file(tensors, str(path))
    return str(path)


def test_random_bytes_cost_their_size_and_a_repeat_costs_nothing(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 2**32, 1 << 18, dtype=np.uint32).view(np.float32)
    a = _save(tmp_path / "a.safetensors", w=noise)
    b = _save(tmp_path / "b.safetensors", w=noise)
    e = stream_entropy([a, b])
    assert 0.99 < e["plain"] <= 1.0  # random bytes: no coding stores less
    assert 0.49 < e["xor_previous"] < 0.51  # the repeat XORs to zeros: only the first costs
    assert e["given_previous"] == pytest.approx(e["xor_previous"], abs=1e-3)


def test_a_parent_never_costs_more_and_weights_cost_less_than_noise(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    w = (rng.standard_normal(1 << 18) * 0.02).astype(np.float32)
    paths = [_save(tmp_path / f"{i}.safetensors", w=w + np.float32(1e-4) * i * w)
             for i in range(3)]
    e = stream_entropy(paths)
    assert e["given_previous"] <= e["xor_previous"] + 1e-4  # H(x|y) <= H(x^y)
    assert e["xor_previous"] < e["plain"] < 0.95  # exponent bytes of weights are skewed
    # a changed shape is not a parent: costed alone
    other = _save(tmp_path / "other.safetensors", w=w[:1000])
    alone = stream_entropy([other])
    assert stream_entropy([paths[0], other])["xor_previous"] == pytest.approx(
        (stream_entropy([paths[0]])["plain"] * Path(paths[0]).stat().st_size
         + alone["plain"] * Path(other).stat().st_size)
        / (Path(paths[0]).stat().st_size + Path(other).stat().st_size), abs=1e-3)
