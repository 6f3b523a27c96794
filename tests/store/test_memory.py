"""MemoryStore against the conformance suite, plus the named-store registry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from casstore.store import MemoryStore, open_store
from casstore.testing.store_suite import StoreConformance


class TestMemoryStore(StoreConformance):
    @pytest.fixture
    def store(self) -> Iterator[MemoryStore]:
        with MemoryStore() as s:
            yield s


def test_memory_urls_name_one_store_per_process() -> None:
    a = open_store("memory://shared-test")
    a.put("k", b"v")
    assert open_store("memory://shared-test").get("k") == b"v"
    assert not open_store("memory://other-test").exists("k")
    MemoryStore.forget("shared-test")
    assert not open_store("memory://shared-test").exists("k")
