"""A real Azure Blob endpoint for tests: Azurite's blob service on 127.0.0.1, and a container.

Azurite is an npm package. :func:`azurite_binary` looks for ``azurite-blob`` in
``$CASSTORE_AZURITE``, the checkout's ``.ci/node_modules/.bin`` (where ``.ci/run`` installs it),
``./node_modules/.bin`` and the ``PATH``. The binary is started directly (not through ``npx``:
killing an ``npx`` wrapper leaves the server running) with in-memory persistence.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from casstore.testing import _servers
from casstore.testing.s3 import free_port

CONTAINER = "casstore-test"
ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public, documented by Microsoft; not a secret)
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
INSTALL_HINT = "install it with: npm install --prefix .ci azurite@3.35.0"


def azurite_binary() -> str | None:
    """The ``azurite-blob`` executable, or None when Azurite is not installed."""
    repo = Path(__file__).resolve().parents[2]
    candidates = [
        os.environ.get("CASSTORE_AZURITE"),
        str(repo / ".ci" / "node_modules" / ".bin" / "azurite-blob"),
        str(Path.cwd() / "node_modules" / ".bin" / "azurite-blob"),
        shutil.which("azurite-blob"),
    ]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def missing_reason() -> str | None:
    """Why an Azurite server cannot start here, or None when it can."""
    if shutil.which("node") is None:
        return "Azure tests need node (Azurite is a node program); node is not installed"
    if azurite_binary() is None:
        return f"Azure tests need Azurite; {INSTALL_HINT}"
    try:
        import adlfs  # noqa: F401
    except ImportError:
        return "Azure tests need adlfs; run: pip install casstore[azure]"
    return None


def connection_string(endpoint: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
        f"BlobEndpoint={endpoint}/{ACCOUNT};"
    )


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"azurite-blob exited with status {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"azurite-blob did not listen on port {port} within {timeout:.0f}s")


@contextmanager
def azurite_server(container: str = CONTAINER) -> Iterator[str]:
    """Start Azurite's blob service on a free port, create ``container``, yield the
    connection string (for ``AZURE_STORAGE_CONNECTION_STRING`` or ``connection_string=``)."""
    from azure.storage.blob import BlobServiceClient

    binary = azurite_binary()
    if binary is None:
        raise RuntimeError(f"Azurite is not installed; {INSTALL_HINT}")
    port = free_port()
    args = [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
            "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent"]  # fmt: skip
    proc = _servers.start(args)
    try:
        _wait_for_port(port, proc)
        conn = connection_string(f"http://127.0.0.1:{port}")
        with BlobServiceClient.from_connection_string(conn) as client:
            client.create_container(container)
        yield conn
    finally:
        _servers.stop(proc)
