"""``casstore tune`` on small files, run as the real command."""

from __future__ import annotations

from pathlib import Path

import pytest

from casstore.tools.tune import EXACT, Sampling, Setting, recommend, sweep
from tests import series
from tests.cli_helpers import run


@pytest.fixture
def files(tmp_path: Path) -> Path:
    base = series.tensors(n=9, size=64 << 10)
    series.save(tmp_path / "ckpt" / "base.safetensors", base)
    series.save(tmp_path / "ckpt" / "finetune.safetensors", series.finetune(base))
    series.save(tmp_path / "ckpt" / "meta.safetensors", base, {"note": "x" * 1000})
    return tmp_path / "ckpt"


def test_tune_json_recommends_an_init_command(files: Path):
    r = run("tune", files, "--json")
    assert r.code == 0, r.err
    d = r.json()
    assert len(d["files"]) == 3 and d["sampling"]["sampled"] is False
    kinds = {x["setting"]["kind"] for x in d["results"]}
    assert kinds == {"tensor", "fastcdc", "fixed"}
    assert {x["encoding"] for x in d["results"]} == {"off", "fast"}
    rec = d["recommendation"]
    assert rec["setting"]["kind"] == "tensor"  # the only kind that dedups shifted tensors
    assert d["command"].startswith("casstore init --chunker tensor --max-chunk ")
    # 3 files, the last third of one changed: about 1/3 + 1/3*... of the bytes are unique
    off = [x for x in d["results"] if x["chunker"] == rec["chunker"] and x["encoding"] == "off"]
    assert 2.0 < off[0]["dedup_ratio"] < 2.6
    # random bytes: the predictor stores them raw, so the default policy costs no bytes
    assert rec["encoding"] == "fast" and rec["stored_bytes"] == off[0]["stored_bytes"]
    assert rec["expected_objects"] > 0 and rec["MB_per_s"] > 0


def test_tune_text_and_sampling(files: Path):
    r = run("tune", files, "--sample-mb", "0.25", "--chunker", "tensor", "--chunker", "fixed")
    assert r.code == 0, r.err
    assert "sampled" in r.out and "estimates" in r.out
    assert "recommended: tensor" in r.out and "casstore init --chunker tensor" in r.out
    assert "fastcdc" not in r.out.split("recommended")[0]


def test_tune_refuses_missing_path(tmp_path: Path):
    r = run("tune", tmp_path / "nope")
    assert r.code == 2 and "no such file" in r.err


def test_sweep_counts_dedup_and_objects(files: Path):
    rep = sweep([files], [Setting("tensor"), Setting("fixed", max_chunk=4096 * 4)],
                sampling=EXACT, encodings=("off",))
    tensor, fixed = rep.results
    assert tensor.logical_bytes == fixed.logical_bytes == rep.total_bytes
    assert tensor.stored_bytes < fixed.stored_bytes  # the longer header shifts fixed cuts
    assert tensor.objects == 9 + 3  # 9 base tensors + 3 changed ones; headers are inline
    assert recommend(rep).result is tensor


def test_sampling_stripes_cover_first_and_last_byte():
    s = Sampling(per_file=4 << 20, stripe=1 << 20, total=None)
    assert s.stripes(3 << 20) == [(0, 3 << 20)]
    stripes = s.stripes(100 << 20)
    assert len(stripes) == 4 and stripes[0][0] == 0 and stripes[-1][1] == 100 << 20
    assert s.for_files(10) is s
    capped = Sampling(per_file=4 << 20, stripe=1 << 20, total=8 << 20)
    assert capped.for_files(4).per_file == 2 << 20
