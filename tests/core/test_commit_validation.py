"""Validate, then store, then publish: every bad commit option or input is refused with
InvalidInputError (or a not-found/exists error for references) before a byte is stored."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from casstore import (
    AlreadyExistsError,
    CasstoreError,
    InvalidInputError,
    NotFoundError,
    Repository,
    UnsafePickleError,
)
from tests import series


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    r = Repository(str(tmp_path / "store"))
    r.commit("m", [series.save(tmp_path / "v1" / "w.safetensors", series.tensors(seed=1))])
    return r


@pytest.fixture
def new_file(tmp_path: Path) -> Path:
    """A file with chunks the store does not have yet (so storing it would leave traces)."""
    return series.save(tmp_path / "new" / "w.safetensors", series.tensors(seed=99))


def snapshot(repo: Repository) -> dict[str, bytes]:
    return {i.key: repo.store.get(i.key) for i in repo.store.list("")}


BAD_OPTIONS: list[tuple[str, dict[str, Any], type[CasstoreError], str]] = [
    ("model", {"model": "../evil"}, InvalidInputError, "invalid model name"),
    ("model-empty", {"model": ""}, InvalidInputError, "invalid model name"),
    ("version", {"version": "1.2"}, InvalidInputError, "malformed version"),
    ("version-ref", {"version": "@current"}, InvalidInputError, "MAJOR.MINOR.PATCH"),
    ("version-exists", {"version": "1.0.0"}, AlreadyExistsError, "already exists"),
    ("bump", {"bump_part": "huge"}, InvalidInputError, "bump must be"),
    ("version_type", {"version_type": "gamma"}, InvalidInputError, "version type"),
    ("metrics-text", {"metrics": {"acc": "high"}}, InvalidInputError, "not a number"),
    ("metrics-bool", {"metrics": {"acc": True}}, InvalidInputError, "not a number"),
    ("metrics-name", {"metrics": {"": 1.0}}, InvalidInputError, "metric name"),
    ("metrics-type", {"metrics": [("acc", 1.0)]}, InvalidInputError, "mapping"),
    ("training_data", {"training_data": {"data_count": "many"}}, InvalidInputError,
     "training data"),
    ("training_data-type", {"training_data": [1, 2]}, InvalidInputError, "training data"),
    ("change_log", {"change_log": 42}, InvalidInputError, "change log must be text"),
    ("tags", {"tags": ["ok", "bad/tag"]}, InvalidInputError, "invalid tag name"),
    ("tags-string", {"tags": "stable"}, InvalidInputError, "not one string"),
    ("dependencies", {"dependencies": [3]}, InvalidInputError, "must be text"),
    ("parent-malformed", {"parent": "1.y"}, InvalidInputError, "malformed version"),
    ("parent-missing", {"parent": "9.9.9"}, NotFoundError, "no version"),
    ("created_by", {"created_by": 7}, InvalidInputError, "must be text"),
    ("ref", {"ref": "a b"}, InvalidInputError, "invalid ref name"),
    ("reason", {"reason": None}, InvalidInputError, "must be text"),
    ("chunker", {"chunker": "zip-9"}, InvalidInputError, "chunker"),
    ("extra", {"extra": {"f": object()}}, InvalidInputError, "cannot be stored"),
    ("extra-keys", {"extra": {1: "x"}}, InvalidInputError, "text keys"),
    ("params-number", {"params": {"lr": 3e-4}}, InvalidInputError, "must be text"),
    ("params-name", {"params": {"9lives": "x"}}, InvalidInputError, "invalid param name"),
    ("params-newline", {"params": {"opt": "adam\nw"}}, InvalidInputError, "one line"),
    ("params-long", {"params": {"opt": "x" * 2000}}, InvalidInputError, "at most"),
    ("params-type", {"params": ["lr=1"]}, InvalidInputError, "mapping"),
    ("metrics-param-prefix", {"metrics": {"param.lr": 1.0}}, InvalidInputError, "prefix"),
    ("lineage-field", {"lineage": {"run": "r1"}}, InvalidInputError, "unknown lineage"),
    ("lineage-type", {"lineage": "r1"}, InvalidInputError, "lineage must be a mapping"),
    ("lineage-number", {"lineage": {"run_id": 7}}, InvalidInputError, "must be text"),
    ("lineage-empty", {"lineage": {"dataset": ""}}, InvalidInputError, "invalid lineage"),
    ("allow_globals-name", {"allow_globals": ["os"]}, InvalidInputError, "MODULE.NAME"),
    ("allow_globals-string", {"allow_globals": "os.system"}, InvalidInputError,
     "not one string"),
    ("allow_globals-type", {"allow_globals": [3]}, InvalidInputError, "must be text"),
]


@pytest.mark.parametrize(
    "options, error, match", [c[1:] for c in BAD_OPTIONS], ids=[c[0] for c in BAD_OPTIONS]
)
def test_bad_option_refused_and_store_untouched(
    repo: Repository, new_file: Path, options: dict[str, Any], error: type, match: str
):
    before = snapshot(repo)
    kw = dict(options)
    model = kw.pop("model", "m")
    with pytest.raises(error, match=match):
        repo.commit(model, [new_file], **kw)
    assert snapshot(repo) == before


def test_unknown_option_refused(repo: Repository, new_file: Path):
    before = snapshot(repo)
    with pytest.raises(TypeError):
        repo.commit("m", [new_file], metric={"a": 1.0})  # a typo of metrics=
    assert snapshot(repo) == before


BAD_INPUTS = ["missing", "empty-folder", "hostile-pickle", "truncated-safetensors",
              "non-utf8-name", "duplicate-name"]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_file_refused_and_store_untouched(repo: Repository, tmp_path: Path,
                                                    new_file: Path, case: str):
    bad = tmp_path / "bad"
    bad.mkdir()
    paths: list[Any] = [new_file]
    error: type = InvalidInputError
    if case == "missing":
        paths.append(bad / "nope.pt")
    elif case == "empty-folder":
        paths.append(bad)
    elif case == "hostile-pickle":
        import pickle

        class Evil:
            def __reduce__(self):
                return (os.system, ("true",))

        (bad / "evil.pt").write_bytes(pickle.dumps(Evil(), protocol=2))
        paths.append(bad / "evil.pt")
        error = UnsafePickleError
    elif case == "truncated-safetensors":
        data = new_file.read_bytes()
        (bad / "cut.safetensors").write_bytes(data[: len(data) // 2])
        paths.append(bad / "cut.safetensors")
    elif case == "non-utf8-name":
        name = os.fsdecode(b"w\xff.bin")
        (bad / name).write_bytes(b"x" * 10_000)
        paths.append(bad)
    elif case == "duplicate-name":
        (bad / "w.safetensors").write_bytes(new_file.read_bytes())
        paths.append(bad / "w.safetensors")
    before = snapshot(repo)
    with pytest.raises(error):
        repo.commit("m", paths)
    assert snapshot(repo) == before


def test_commit_sources_validates_before_storing(repo: Repository):
    data = os.urandom(200_000)

    def read_at(offset: int, n: int) -> bytes:
        return data[offset : offset + n]

    before = snapshot(repo)
    for sources, match in (
        ([], "nothing to commit"),
        ([("../x.bin", len(data), read_at)], "relative"),
        ([("a.bin", len(data), read_at), ("a.bin", len(data), read_at)], "duplicate"),
    ):
        with pytest.raises(InvalidInputError, match=match):
            repo.commit_sources("m", sources)
    with pytest.raises(InvalidInputError, match="not a number"):
        repo.commit_sources("m", [("a.bin", len(data), read_at)], metrics={"a": "b"})
    assert snapshot(repo) == before
