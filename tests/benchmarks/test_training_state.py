"""Smoke test of benchmarks.training_state on a tiny model."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")


def test_training_state_benchmark_runs(tmp_path):
    from benchmarks.training_state import run

    out = run(0.05, 2, str(tmp_path / "store"))
    first, second = out["checkpoints"]
    assert second["new_bytes"] < first["new_bytes"] <= first["logical_bytes"] + 4096
    assert out["load"]["model"]["bytes_read"] < out["load"]["all"]["bytes_read"]
