"""FsspecStore over fsspec's memory filesystem: the generic (best-effort) path."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from casstore.store import FsspecStore, open_store
from casstore.testing.store_suite import StoreConformance


class TestFsspecMemoryStore(StoreConformance):
    @pytest.fixture
    def store(self) -> Iterator[FsspecStore]:
        url = f"memory://casstore-tests/{uuid.uuid4().hex}"
        with FsspecStore(url) as s:
            yield s
        if s.fs.exists(s.root):
            s.fs.rm(s.root, recursive=True)


def test_generic_backends_do_not_promise_atomicity() -> None:
    store = open_store(f"fsspec+memory://casstore-tests/{uuid.uuid4().hex}", retry=False)
    assert isinstance(store, FsspecStore)
    assert not store.capabilities.atomic_create
    assert not store.capabilities.conditional_replace
    assert store.probe_conditional_writes()  # one process, one lock: it behaves
