"""Hostile pickles: refused at commit and at load, and their payload never runs."""

from __future__ import annotations

import io
import os

import pytest

torch = pytest.importorskip("torch")

import casstore.torch as ct  # noqa: E402
from casstore import UnsafePickleError  # noqa: E402
from casstore.chunking.base import RAW, FileLayout  # noqa: E402
from casstore.torch.dcp import _check_object  # noqa: E402


class Evil:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def evil_checkpoint(path, marker, *, zip_format: bool = True) -> None:
    torch.save(
        {"w": torch.zeros(4), "payload": Evil(str(marker))},
        path,
        _use_new_zipfile_serialization=zip_format,
    )


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_payload_is_live(tmp_path, zip_format):
    """The test payload really runs when unpickled by torch with weights_only=False."""
    proof = tmp_path / "proof"
    evil_checkpoint(tmp_path / "evil.pt", proof, zip_format=zip_format)
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert proof.exists()


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_malicious_pt_refused_at_commit(repo, tmp_path, zip_format):
    marker = tmp_path / "pwned"
    evil_checkpoint(tmp_path / "evil.pt", marker, zip_format=zip_format)
    with pytest.raises(UnsafePickleError, match=r"(posix|os|nt)\.system"):
        repo.commit("m", [tmp_path / "evil.pt"])
    assert not marker.exists()
    assert list(repo.store.list("chunks/")) == []  # nothing stored
    assert list(repo.store.list("models/")) == []


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_malicious_pt_refused_at_load(repo, tmp_path, monkeypatch, zip_format):
    """A store written by a tool that did not check (simulated by switching the commit-time
    check off) still cannot make casstore.torch run the pickle."""
    marker = tmp_path / "pwned"
    evil_checkpoint(tmp_path / "evil.pt", marker, zip_format=zip_format)
    with monkeypatch.context() as m:
        permissive = lambda read_at, size, filename="", allow=(): FileLayout(RAW)  # noqa: E731
        m.setattr("casstore.repo.commit.detect_layout", permissive)
        m.setattr("casstore.chunking.chunkers.detect_layout", permissive)
        repo.commit("m", [tmp_path / "evil.pt"])
    with pytest.raises(UnsafePickleError):
        ct.load(repo, "m")
    with pytest.raises(UnsafePickleError):
        ct.load(repo, "m", keys=["w"])
    with pytest.raises(UnsafePickleError):
        ct.load_into(torch.nn.Linear(2, 2), repo, "m", strict=False)
    assert not marker.exists()


def test_dcp_objects_are_checked_before_dcp_unpickles_them(tmp_path):
    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    torch.save(Evil(str(marker)), buf)
    with pytest.raises(UnsafePickleError):
        _check_object(buf.getvalue(), "extra_state")
    ok = io.BytesIO()
    torch.save({"lr": 0.1, "betas": (0.9, 0.99), "step": torch.tensor(3)}, ok)
    _check_object(ok.getvalue(), "optim")
    assert not marker.exists()
