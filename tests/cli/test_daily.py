"""Issue 15 item 8: the small daily things."""

from __future__ import annotations

from pathlib import Path

import pytest

from casstore import Repository
from tests import series
from tests.cli_helpers import run


@pytest.fixture
def store(tmp_path: Path) -> Path:
    store = tmp_path / "store"
    base = series.tensors(n=3)
    for i in range(2):
        f = series.save(tmp_path / f"v{i}" / "m.safetensors", series.finetune(base, seed=i))
        assert run("commit", "m", f, "-m", f"accuracy=0.9{i}", store=store).code == 0
    return store


def test_daily_version_flag():
    import casstore

    r = run("--version")
    assert r.code == 0 and r.out.strip() == f"casstore {casstore.__version__}"


def test_daily_reflog_of_unknown_model_exits_3(store: Path):
    r = run("reflog", "nosuchmodel", store=store)
    assert r.code == 3 and "unknown model 'nosuchmodel'" in r.err
    r = run("show", "nosuchmodel", store=store)
    assert r.code == 3


def test_daily_policy_show_prints_no_python_dicts(store: Path):
    r = run("policy", "set", "--keep-last", "3", "--keep-tag", "stable", "--keep-best",
            "accuracy:max", store=store)
    assert r.code == 0, r.err
    for out in (r.out, run("policy", "show", store=store).out):
        assert "{" not in out and "[" not in out and "'" not in out, out
        assert "keep_last=3" in out and "stable" in out


def test_daily_commit_result_repr_is_one_line(tmp_path: Path):
    f = series.save(tmp_path / "big" / "m.safetensors", series.tensors(n=40, size=4096))
    res = Repository(tmp_path / "s").commit("m", [f])
    text = repr(res)
    assert "\n" not in text and len(text) < 200 and res.version.name in text
