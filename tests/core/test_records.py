"""Records built from a caller's values are checked as a reader will check them before they
are stored (``Record.checked``): a wrong type is refused with InvalidInputError and nothing is
written, instead of a ref or a config that every later read refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from casstore import Repository
from casstore.errors import InvalidInputError
from casstore.repo.config import StoreConfig
from casstore.repo.keys import CONFIG
from casstore.repo.refs import RefValue, Split, Target


def _two_versions(tmp_path: Path) -> Repository:
    repo = Repository(str(tmp_path / "store"))
    for i in range(2):
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / "a.txt").write_text(f"version {i}")
        repo.commit("m", [tmp_path / "in"])
    return repo


@pytest.mark.parametrize("kw", [{"reason": 123}, {"actor": ["x"]}, {"reason": b"bytes"}])
def test_a_ref_move_with_a_non_text_reason_or_actor_is_refused_unwritten(
        tmp_path: Path, kw: dict) -> None:
    repo = _two_versions(tmp_path)
    before = repo.refs.read("m", "current")[0]
    with pytest.raises(InvalidInputError, match="invalid ref move"):
        repo.promote("m", "1.0.0", **kw)
    fresh = Repository(str(tmp_path / "store"))
    assert fresh.refs.read("m", "current")[0] == before  # unchanged and still readable
    assert [e.seq for e in fresh.refs.history("m", "current")] == [before.seq]


@pytest.mark.parametrize("kw", [{"single_writer": "yes"}, {"chunker": 123},
                                {"encoding": None}])
def test_a_config_with_a_wrong_type_is_refused_and_not_written(tmp_path: Path, kw: dict) -> None:
    from casstore.repo.config import save_config
    from casstore.store import open_store

    store = open_store(str(tmp_path / "bare"))
    with pytest.raises(InvalidInputError, match="invalid store config"):
        save_config(store, StoreConfig(**kw))
    assert not store.exists(CONFIG)


def test_checked_converts_what_parse_converts() -> None:
    t = Target(version="1.0.0", manifest="ab" * 32)
    split = Split(base=t, candidate=t, weight=0.25, steps=(0.25, 1))  # an int step
    steps = split.checked("split").steps
    assert steps == (0.25, 1.0) and all(type(x) is float for x in steps)
    assert RefValue(target=t).checked("ref value") == RefValue(target=t)
    with pytest.raises(InvalidInputError, match="invalid ref value"):
        RefValue(target=t).replace(target=Target(version=1, manifest="x")).checked("ref value")
