"""The pickle allow-list: strict by default; ``allow_globals`` / ``--allow-global`` let a
``.pt`` file name more globals on purpose, which stay inert stubs (never imported or called)."""

from __future__ import annotations

import argparse
import os
import pickle
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

import casstore.torch as ct  # noqa: E402
from casstore import Repository, UnsafePickleError  # noqa: E402
from casstore.chunking.torch_pickle import ALLOW_GLOBALS_KEY  # noqa: E402
from tests.cli_helpers import run  # noqa: E402

NUMPY_SCALAR = [f"{np.float64(0).__reduce__()[0].__module__}.scalar", "numpy.dtype"]


def keys(repo: Repository) -> set[str]:
    return {i.key for i in repo.store.list("")}


@pytest.fixture
def pt(tmp_path: Path) -> Path:
    path = tmp_path / "ckpt" / "train.pt"
    path.parent.mkdir()
    torch.save({"w": torch.arange(6.0).reshape(2, 3), "args": argparse.Namespace(lr=0.1),
                "best": np.float64(0.25)}, path)
    return path


def test_strict_by_default_and_allowed_on_purpose(repo: Repository, pt: Path):
    repo.commit("base", [pt.parent], allow_globals=["argparse.Namespace", *NUMPY_SCALAR])
    before = keys(repo)
    with pytest.raises(UnsafePickleError, match=r"disallowed global argparse\.Namespace"):
        repo.commit("m", [pt])
    with pytest.raises(UnsafePickleError, match="--allow-global numpy"):
        repo.commit("m", [pt], allow_globals=["argparse.Namespace"])  # the next one is named
    assert keys(repo) == before  # refused before anything was stored
    res = repo.commit("m", [pt], allow_globals=["argparse.Namespace", *NUMPY_SCALAR])
    entry = res.version.manifest.files[0]
    assert entry.format == "torch-zip" and len(entry.tensors) == 1
    assert entry.metadata[ALLOW_GLOBALS_KEY].split(",") == sorted(
        ["argparse.Namespace", *NUMPY_SCALAR])
    sd = ct.load(repo.store.url, "m")  # the recorded allow-list applies to loads too
    assert list(sd) == ["w"] and torch.equal(sd["w"], torch.arange(6.0).reshape(2, 3))


def test_an_allowed_global_is_never_called(repo: Repository, tmp_path: Path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"x": Evil()}, protocol=2))
    qualname = f"{os.system.__module__}.system"
    with pytest.raises(UnsafePickleError, match=re.escape(f"disallowed global {qualname}")):
        repo.commit("m", [path])
    repo.commit("m", [path], allow_globals=[qualname])  # the user said so: stored, inert
    assert not marker.exists()
    repo.checkout("m", "latest", tmp_path / "out")
    assert not marker.exists() and (tmp_path / "out" / "evil.pt").read_bytes() == \
        path.read_bytes()


def test_load_can_allow_what_the_commit_did_not_record(repo: Repository, pt: Path):
    res = repo.commit("m", [pt], allow_globals=["argparse.Namespace", *NUMPY_SCALAR])
    bare = res.version.manifest.files[0].replace(metadata={})
    # a version committed elsewhere without the record: the load names the globals itself
    from casstore.repo.manifest import encode
    from casstore.torch._reading import TensorIndex

    assert encode(res.version.manifest)  # still a valid manifest
    v = type(res.version).of(res.version.manifest.replace(files=(bare,)),
                             res.version.id)
    with pytest.raises(UnsafePickleError):
        TensorIndex(repo.chunks, v)
    index = TensorIndex(repo.chunks, v, allow_globals=["argparse.Namespace", *NUMPY_SCALAR])
    assert index.names == ["w"]


def test_cli_allow_global(tmp_path: Path, pt: Path):
    store = tmp_path / "store"
    r = run("commit", "m", pt, store=store)
    assert r.code == 2 and "--allow-global argparse.Namespace" in r.err
    args = [a for q in ["argparse.Namespace", *NUMPY_SCALAR] for a in ("--allow-global", q)]
    assert run("commit", "m", pt, *args, store=store).code == 0
    for bad in ("os", "a b.c", "1x.y", ".x"):
        r = run("commit", "m", pt, "--allow-global", bad, store=store)
        assert r.code == 2 and "MODULE.NAME" in r.err, (bad, r.err)
