"""Fixtures for the casstore.torch tests (each module skips itself without torch)."""

from __future__ import annotations

import pytest

from casstore import Repository


@pytest.fixture
def store_path(tmp_path) -> str:
    return str(tmp_path / "store")


@pytest.fixture
def repo(store_path):
    r = Repository(store_path)
    yield r
    r.store.close()
