"""Shared fixtures: moto's S3 server, Azurite and fake-gcs-server (one each per session), and
a fresh store URL on each per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from casstore.testing import azure, gcs
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


@pytest.fixture(scope="session")
def azurite() -> Iterator[str]:
    """The connection string of Azurite's blob service (container ``casstore-test`` exists);
    skipped, with the reason, where node or Azurite is not installed."""
    reason = azure.missing_reason()
    if reason:
        pytest.skip(reason)
    with azure.azurite_server() as conn:
        yield conn


@pytest.fixture
def azure_url(azurite: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh ``az://casstore-test/<uuid>`` prefix, reached through
    ``$AZURE_STORAGE_CONNECTION_STRING`` (inherited by subprocesses too)."""
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite)
    return f"az://{azure.CONTAINER}/{uuid.uuid4().hex}"


@pytest.fixture(scope="session")
def fake_gcs() -> Iterator[str]:
    """The endpoint of fake-gcs-server (bucket ``casstore-test`` exists); skipped, with the
    reason, where the fake-gcs-server wheel or gcsfs is not installed."""
    reason = gcs.missing_reason()
    if reason:
        pytest.skip(reason)
    with gcs.fake_gcs_server() as endpoint:
        yield endpoint


@pytest.fixture
def gcs_url(fake_gcs: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh ``gs://casstore-test/<uuid>`` prefix, reached through ``$STORAGE_EMULATOR_HOST``
    (inherited by subprocesses too)."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs)
    for name, value in gcs.ENV.items():
        monkeypatch.setenv(name, value)
    return f"gs://{gcs.BUCKET}/{uuid.uuid4().hex}"
