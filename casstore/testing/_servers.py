"""Starting and stopping the emulator processes the test fixtures run."""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: SIGTERM this server when the test process that started it dies, even by
    SIGKILL or a CI timeout, so no emulator outlives its test run."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def start(args: list[str]) -> subprocess.Popen[bytes]:
    """Start a server binary directly (no shell or npx wrapper, so its PID is the server's)."""
    return subprocess.Popen(
        args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s; always reaped."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
