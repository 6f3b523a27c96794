"""Hooks around ref moves: health checks and notifications (Python callables or shell commands).

A shell health check gets the version in its environment (``CASSTORE_MODEL``,
``CASSTORE_VERSION``, ``CASSTORE_VERSION_NAME``, ``CASSTORE_REF``) and passes by exiting 0.
A notify command receives the ref-move event as JSON on stdin. Both run with a timeout; a
notification never undoes a move.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from casstore.repo.catalog import Version

HealthCheck = Callable[[Version], bool] | str
Notifier = Callable[[dict[str, Any]], None]


@dataclass
class Hooks:
    """What runs around ref moves: notifiers after each move, and the timeouts of commands."""

    notifiers: list[Notifier] = field(default_factory=list)
    notify_commands: list[str] = field(default_factory=list)
    health_timeout: float = 300.0
    notify_timeout: float = 60.0

    def notify(self, event: dict[str, Any]) -> None:
        """Tell every notifier and notify command about ``event``; failures are swallowed."""
        for fn in self.notifiers:
            try:
                fn(event)
            except Exception:
                pass
        for cmd in self.notify_commands:
            notify_command(cmd, event, timeout=self.notify_timeout)

    def health_check(self, check: HealthCheck, version: Version, ref: str) -> tuple[bool, str]:
        return run_health_check(check, version, ref, timeout=self.health_timeout)


def run_health_check(
    check: HealthCheck, version: Version, ref: str, *, timeout: float = 300.0
) -> tuple[bool, str]:
    """Run a callable or a shell command (exit 0 = healthy) against a version."""
    if callable(check):
        try:
            ok = bool(check(version))
        except Exception as e:  # a crashing check is a failed check
            return False, f"health check raised {type(e).__name__}: {e}"
        return ok, "health check passed" if ok else "health check returned false"
    env = dict(
        os.environ,
        CASSTORE_MODEL=version.model,
        CASSTORE_VERSION=version.version,
        CASSTORE_VERSION_NAME=version.name,
        CASSTORE_REF=ref,
    )
    try:
        proc = subprocess.run(
            check, shell=True, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return False, f"health check timed out after {timeout:g}s: {check}"
    if proc.returncode == 0:
        return True, "health check passed"
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
    return False, f"health check exited {proc.returncode}: {tail[0]}"


def notify_command(command: str, event: dict[str, Any], *, timeout: float = 60.0) -> None:
    """Send a JSON event on stdin to a shell command; its failure never undoes a move."""
    try:
        subprocess.run(
            command,
            shell=True,
            input=json.dumps(event, default=str),
            text=True,
            timeout=timeout,
            capture_output=True,
        )
    except (OSError, subprocess.SubprocessError):
        pass
