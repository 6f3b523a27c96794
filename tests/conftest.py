"""Shared fixtures: moto's S3 server (session) and a fresh S3 store URL per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from casstore.testing.s3 import BUCKET, moto_s3_server


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[str]:
    """The endpoint URL of moto's S3 server (bucket ``casstore-test`` exists)."""
    with moto_s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3_url(moto_s3: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh ``s3://casstore-test/<uuid>`` prefix; ``open_store(s3_url)`` reaches moto
    through ``$CASSTORE_S3_ENDPOINT_URL`` (inherited by subprocesses too)."""
    monkeypatch.setenv("CASSTORE_S3_ENDPOINT_URL", moto_s3)
    return f"s3://{BUCKET}/{uuid.uuid4().hex}"
