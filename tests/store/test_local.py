"""LocalStore against the conformance suite, plus path safety and on-disk behaviour."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from casstore.errors import BackendError, InvalidInputError, NotFoundError, PermissionDeniedError
from casstore.store import LocalStore, open_store
from casstore.testing.store_suite import StoreConformance


class TestLocalStore(StoreConformance):
    cross_process = True

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[LocalStore]:
        with LocalStore(tmp_path / "store") as s:
            yield s


@pytest.mark.parametrize("key", ["../escape", "a/../../escape", "/etc/passwd", "a\\..\\b", "a//b"])
def test_keys_cannot_escape_the_root(tmp_path: Path, key: str) -> None:
    store = LocalStore(tmp_path / "store")
    with pytest.raises(InvalidInputError):
        store.put(key, b"x")
    with pytest.raises(InvalidInputError):
        store.get(key)
    assert not (tmp_path / "escape").exists()


def test_open_store_paths(tmp_path: Path) -> None:
    for spec in (tmp_path / "s", str(tmp_path / "s"), f"file://{tmp_path / 's'}"):
        store = open_store(spec)
        assert isinstance(store, LocalStore)
        assert store.root == str(tmp_path / "s")


def test_layout_on_disk(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("chunks/ab/abcdef", b"x")
    store.replace_if_match("models/m/refs/main", b"r", None)
    assert (tmp_path / "chunks" / "ab" / "abcdef").read_bytes() == b"x"
    assert os.listdir(tmp_path / "tmp") == []  # temp files are cleaned up
    assert len(os.listdir(tmp_path / "locks")) == 1


def test_nothing_is_created_by_reads(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    assert list(store.list("")) == []
    assert not store.exists("a")
    assert not (tmp_path / "store").exists()


def test_os_errors_are_translated(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("file", b"x")
    with pytest.raises(BackendError) as info:
        store.put("file/child", b"y")  # a file where a folder should be
    assert "file" in str(info.value)
    assert not isinstance(info.value, NotFoundError)


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path)
    store.put("locked/x", b"x")
    real_open, real_scandir = os.open, os.scandir

    def denied(path: str, *args: object, **kwargs: object) -> object:
        if "locked" in os.fspath(path):
            raise PermissionError(13, "Permission denied", path)
        return (real_open if args else real_scandir)(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    monkeypatch.setattr(os, "scandir", denied)
    with pytest.raises(PermissionDeniedError, match="locked"):
        store.get("locked/x")
    with pytest.raises(PermissionDeniedError, match="locked"):
        list(store.list("locked/"))


def test_disk_full_is_a_backend_error_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path)
    store.put("warm", b"x")

    def full(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(BackendError, match="No space") as info:
        store.put("chunks/ab/new", b"data")
    assert "chunks" in str(info.value) and info.value.errno == 28
    assert os.listdir(tmp_path / "tmp") == []
    assert not store.exists("chunks/ab/new")


def test_listing_errors_are_not_empty_listings(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("d/x", b"x")
    real_scandir = os.scandir

    def broken(path: object) -> object:
        raise OSError(5, "Input/output error")

    os.scandir = broken  # type: ignore[assignment]
    try:
        with pytest.raises(BackendError, match="Input/output"):
            list(store.list("d/"))
    finally:
        os.scandir = real_scandir


def test_flush_fsyncs_deferred_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path)
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    for i in range(20):
        store.put(f"chunks/{i:02x}/obj", b"x", sync=False)
    assert synced == []
    store.flush()
    assert len(synced) >= 40  # 20 files + their 20 folders (+ parents)
    synced.clear()
    store.flush()
    assert synced == []
