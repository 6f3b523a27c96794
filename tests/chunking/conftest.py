"""Fixtures for the chunking tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def torch():
    """torch, or skip the test where it is not installed."""
    return pytest.importorskip("torch")
