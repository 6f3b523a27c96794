"""Starting and stopping the emulator processes the test fixtures run."""

from __future__ import annotations

import subprocess


def start(args: list[str]) -> subprocess.Popen[bytes]:
    """Start a server binary directly (no shell or npx wrapper, so its PID is the server's)."""
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s; always reaped."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
