"""String params and lineage: stored with the version, shown by ``show``, queryable with
``--where param.NAME=VALUE``."""

from __future__ import annotations

from pathlib import Path

import pytest

from casstore import InvalidInputError, Repository
from casstore.repo.query import Query, parse_condition
from tests import series
from tests.cli_helpers import run


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    base = series.tensors(n=3, size=4096)
    return [series.save(tmp_path / f"v{i}" / "w.safetensors", series.finetune(base, seed=i))
            for i in range(3)]


def test_params_and_lineage_round_trip_and_query(repo: Repository, files: list[Path]):
    repo.commit("m", [files[0]], params={"optimizer": "adamw", "lr": "3e-4"},
                lineage={"run_id": "run-1", "dataset": "wiki", "dataset_version": "2024-06"},
                metrics={"acc": 0.8})
    repo.commit("m", [files[1]], params={"optimizer": "sgd", "lr": "0.1"}, metrics={"acc": 0.9})
    repo.commit("m", [files[2]], metrics={"acc": 0.7})  # no params: an old-style manifest
    v = Repository(repo.store.url).get_version("m", "1.0.0")  # read back, not from a cache
    assert v.params == {"optimizer": "adamw", "lr": "3e-4"}
    d = v.to_dict()
    assert d["lineage"] == {"run_id": "run-1", "dataset": "wiki", "dataset_version": "2024-06"}
    assert repo.get_version("m", "1.0.2").to_dict()["params"] == {}

    def found(*conds: str) -> list[str]:
        q = Query(where=[parse_condition(c) for c in conds])
        return [v.version for v in repo.query("m", q)]

    assert found("param.optimizer=adamw") == ["1.0.0"]
    assert found("param.lr==0.1") == ["1.0.1"]
    assert found("param.optimizer!=adamw") == ["1.0.1", "1.0.2"]  # no param: != matches
    assert found("param.optimizer=adamw", "acc>=0.85") == []
    assert found("param.lr=3e-4", "acc>=0.5") == ["1.0.0"]  # compared as text, not a number


def test_bad_param_conditions():
    for bad in ("param.lr>0.1", "param.=x", "param.9=x"):
        with pytest.raises(InvalidInputError, match="param condition"):
            parse_condition(bad)


def test_cli_params_lineage_show_query(tmp_path: Path, files: list[Path]):
    store = tmp_path / "store"
    r = run("commit", "m", files[0], "--param", "optimizer=adamw", "-p", "lr=3e-4",
            "--run-id", "run-9", "--dataset", "wiki", "--dataset-version", "v3", store=store)
    assert r.code == 0, r.err
    assert run("commit", "m", files[1], "-p", "optimizer=sgd", store=store).code == 0
    show = run("show", "m", "1.0.0", store=store)
    assert "lr=3e-4 optimizer=adamw" in show.out
    assert "run_id=run-9 dataset=wiki dataset_version=v3" in show.out
    assert "lineage" not in run("show", "m", "1.0.1", store=store).out  # none recorded
    js = run("show", "m", "1.0.0", "--json", store=store).json()
    assert js["params"] == {"lr": "3e-4", "optimizer": "adamw"}
    assert js["lineage"]["run_id"] == "run-9"
    q = run("query", "m", "--where", "param.optimizer=adamw", "--json", store=store).json()
    assert [v["semver"] for v in q["versions"]] == ["1.0.0"]
    for bad in ("lr", "=x", "9x=1"):
        r = run("commit", "m", files[2], "--param", bad, store=store)
        assert r.code == 2 and "param" in r.err, (bad, r.err)
    r = run("commit", "m", files[2], "-p", "a=1", "-p", "a=2", store=store)
    assert r.code == 2 and "twice" in r.err
    assert len(Repository(str(store)).history("m")) == 2
