"""The emulator fixtures never outlive their test process, even one killed with SIGKILL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from casstore.testing import azure, gcs

CODE = """
import os
from casstore.testing import {module} as m
with m.{server}() as url:
    print(url.rsplit(":", 1)[1].split(";")[0].split("/")[0], flush=True)
    os.kill(os.getpid(), 9)
"""


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize(
    ("module", "server"),
    [
        pytest.param("gcs", "fake_gcs_server", marks=pytest.mark.gcs),
        pytest.param("azure", "azurite_server", marks=pytest.mark.azure),
    ],
)
def test_server_dies_with_a_killed_test_process(module: str, server: str) -> None:
    reason = {"gcs": gcs, "azure": azure}[module].missing_reason()
    if reason:
        pytest.skip(reason)
    code = CODE.format(module=module, server=server)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ), timeout=120)  # fmt: skip
    assert out.returncode == -9, out.stderr
    port = int(out.stdout.strip())
    deadline = time.monotonic() + 10
    while _listening(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _listening(port), f"the {module} emulator outlived its killed test process"
