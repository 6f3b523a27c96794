"""Checkout semantics: no silent overwrite (issue 15 item 6), no predictable or followed
temporary name (issue 18 defect 3), nothing half-written after a failure, bounded memory."""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from casstore import AlreadyExistsError, InvalidInputError, NotFoundError, Repository
from casstore.repo.keys import chunk_key
from tests import series
from tests.cli_helpers import run


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _folder(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def local(tmp_path: Path) -> Repository:
    return Repository(str(tmp_path / "store"))


def test_checkout_every_backend_roundtrip_of_many_files(repo: Repository, tmp_path: Path):
    files = {f"d{i % 3}/f{i}.bin": secrets.token_bytes(i * 997) for i in range(40)}
    files["big.bin"] = secrets.token_bytes(3 << 20)
    repo.commit("m", [_folder(tmp_path / "in", files)])
    paths = repo.checkout("m", "@current", tmp_path / "out")
    assert len(paths) == len(files)
    for rel, data in files.items():
        assert (tmp_path / "out" / rel).read_bytes() == data
    assert not [p for p in _listing(tmp_path / "out") if "casstore" in p]


def test_issue15_item6_checkout_refuses_to_overwrite_without_force(local: Repository,
                                                                    tmp_path: Path):
    local.commit("m", [_folder(tmp_path / "in", {"a.bin": b"new-a", "sub/b.bin": b"new-b"})])
    out = tmp_path / "out"
    _folder(out, {"sub/b.bin": b"mine"})
    with pytest.raises(AlreadyExistsError, match="--force"):
        local.checkout("m", "@current", out)
    assert (out / "sub" / "b.bin").read_bytes() == b"mine"
    assert _listing(out) == {"sub", "sub/b.bin"}  # refused before anything was written
    local.checkout("m", "@current", out, overwrite=True)
    assert (out / "sub" / "b.bin").read_bytes() == b"new-b"
    assert (out / "a.bin").read_bytes() == b"new-a"


def test_issue15_item6_cli_checkout_force(local: Repository, tmp_path: Path):
    local.commit("m", [_folder(tmp_path / "in", {"a.bin": b"new"})])
    out = _folder(tmp_path / "out", {"a.bin": b"mine"})
    r = run("checkout", "m", "-o", out, store=local.store.url)
    assert r.code == 4 and "--force" in r.err and "Traceback" not in r.err
    assert (out / "a.bin").read_bytes() == b"mine"
    r = run("checkout", "m", "-o", out, "--force", store=local.store.url)
    assert r.code == 0, r.err
    assert (out / "a.bin").read_bytes() == b"new"


def test_issue15_item6_interrupted_checkout_leaves_no_half_written_file(local: Repository,
                                                                         tmp_path: Path):
    data = secrets.token_bytes(6 << 20)
    res = local.commit("m", [_folder(tmp_path / "in", {"model.bin": data, "z.txt": b"z"})],
                       chunker=f"fixed/size={1 << 20}")
    entry = res.version.manifest.file("model.bin")
    local.store.delete(chunk_key(entry.chunk_digests()[4]))  # fails in the middle of the file
    out = _folder(tmp_path / "out", {"model.bin": b"previous"})
    with pytest.raises(NotFoundError, match=r"model\.bin"):
        local.checkout("m", "@current", out, overwrite=True)
    assert (out / "model.bin").read_bytes() == b"previous"  # old file intact
    assert _listing(out) <= {"model.bin", "z.txt"}  # no temporary file left behind
    fresh = tmp_path / "fresh"
    with pytest.raises(NotFoundError):
        local.checkout("m", "@current", fresh)
    assert "model.bin" not in _listing(fresh)
    assert not [p for p in _listing(fresh) if "casstore" in p]


def test_defect18_3a_version_holding_temp_like_names_checks_out_every_file(local: Repository,
                                                                          tmp_path: Path):
    weights = series.save(tmp_path / "w.safetensors", series.tensors()).read_bytes()
    files = {
        "model.safetensors": weights,
        ".model.safetensors.casstore-tmp": b"not a temp file",
        ".casstore-0123456789abcdef01234567.tmp": b"neither is this",
    }
    local.commit("m", [_folder(tmp_path / "in", files)])
    paths = local.checkout("m", "@current", tmp_path / "out")
    assert len(paths) == 3
    for rel, data in files.items():
        assert (tmp_path / "out" / rel).read_bytes() == data
    assert _listing(tmp_path / "out") == set(files)


def test_defect18_3b_symlink_planted_at_any_name_is_never_written_through(
        local: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    local.commit("m", [_folder(tmp_path / "in", {"model.bin": b"payload" * 100,
                                                   "sub/x.bin": b"x"})])
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    out = tmp_path / "out"
    out.mkdir()
    # (1) at the old predictable temporary name, and at the next "random" name we will draw
    os.symlink(victim, out / ".model.bin.casstore-tmp")
    os.symlink(victim, out / ".casstore-planted.tmp")
    names = iter(["planted", "fresh1", "fresh2", "fresh3"])
    monkeypatch.setattr(secrets, "token_hex", lambda n: next(names))
    local.checkout("m", "@current", out)
    assert victim.read_bytes() == b"precious"
    assert (out / "model.bin").read_bytes() == b"payload" * 100
    assert (out / ".casstore-planted.tmp").is_symlink()
    # (2) at the file's own name: refused without --force; replaced (not followed) with it
    out2 = tmp_path / "out2"
    out2.mkdir()
    os.symlink(victim, out2 / "model.bin")
    with pytest.raises(AlreadyExistsError):
        local.checkout("m", "@current", out2)
    monkeypatch.undo()
    local.checkout("m", "@current", out2, overwrite=True)
    assert victim.read_bytes() == b"precious"
    assert not (out2 / "model.bin").is_symlink()
    assert (out2 / "model.bin").read_bytes() == b"payload" * 100
    # (3) at a folder's name: refused even with --force, nothing written through it
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out3 = tmp_path / "out3"
    out3.mkdir()
    os.symlink(elsewhere, out3 / "sub")
    for overwrite in (False, True):
        with pytest.raises(InvalidInputError, match="symlink"):
            local.checkout("m", "@current", out3, overwrite=overwrite)
    assert list(elsewhere.iterdir()) == []


@pytest.mark.slow
def test_checkout_of_a_2gb_file_peaks_below_128mb(tmp_path: Path):
    """The whole ``casstore checkout`` process, as the kernel counts it (VmHWM)."""
    import numpy as np

    src = tmp_path / "in" / "big.bin"
    src.parent.mkdir()
    rng = np.random.default_rng(7)
    with open(src, "wb") as f:
        for _ in range(32):
            f.write(rng.integers(0, 2**63, size=(64 << 20) // 8, dtype=np.int64).tobytes())
    store = tmp_path / "store"
    Repository(str(store)).commit("m", [src], chunker=f"fixed/size={16 << 20}")
    want = _digest(src)
    src.unlink()
    out = tmp_path / "out"
    env = dict(os.environ)
    env.pop("CASSTORE_STORE", None)
    # VmHWM of the command's own address space: wait4's ru_maxrss would include the parent's
    # peak (the child is forked from this big test process before it execs)
    code = ("import sys; from casstore.cli import main; code = main(sys.argv[1:]); "
            "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0], "
            "file=sys.stderr); sys.exit(code)")
    p = subprocess.run([sys.executable, "-c", code, "--store", str(store), "checkout", "m",
                        "-o", str(out)], env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert os.path.getsize(out / "big.bin") == 2 << 30
    assert _digest(out / "big.bin") == want
    peak_mb = int(p.stderr.split("VmHWM:")[1].split()[0]) / 1024
    assert peak_mb <= 128, f"checkout of 2 GiB peaked at {peak_mb:.0f} MB"
