"""Hooks around ref moves: pre-checks, health checks and notifications (Python callables or
shell commands), each bounded by a timeout.

A shell pre-check or health check runs with ``sh -c`` and passes by exiting 0. Its environment
is the caller's plus :data:`CHECK_ENV` (the model, version, full name, manifest digest, ref,
store URL and which stage it is). A pre-check runs against the target BEFORE the ref moves (a
failure refuses the move); a health check runs after it (a failure switches the ref back).
A notify command receives the ref-move event as JSON on stdin. A notification never undoes a
move, but a failed one (non-zero exit, not found, timed out, a Python notifier raising) is
reported: :meth:`Hooks.notify` returns what failed, and the CLI prints it and exits 9.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from casstore._own_env import for_children

if TYPE_CHECKING:
    from casstore.repo.catalog import Version

HealthCheck = Callable[["Version"], bool] | str
Notifier = Callable[[dict[str, Any]], None]

DEFAULT_CHECK_TIMEOUT = 60.0
"""Seconds a pre-check or health check may run before it counts as failed."""
DEFAULT_NOTIFY_TIMEOUT = 30.0
"""Seconds a notify command may run before it counts as failed."""

CHECK_ENV = {
    "CASSTORE_MODEL": "the model",
    "CASSTORE_VERSION": "the target's semantic version, e.g. 1.2.0",
    "CASSTORE_VERSION_NAME": "its full name, MODEL_v1.2.0_YYYYMMDD_HHMMSS",
    "CASSTORE_MANIFEST": "its manifest digest in hex",
    "CASSTORE_REF": "the ref being moved",
    "CASSTORE_STORE": "the store's URL",
    "CASSTORE_STAGE": "pre-check before the move, health-check after it",
}
"""What a shell check finds in its environment, on top of the caller's."""


@dataclass
class Hooks:
    """What runs around ref moves: notifiers after each move, and the timeouts of commands."""

    notifiers: list[Notifier] = field(default_factory=list)
    notify_commands: list[str] = field(default_factory=list)
    health_timeout: float = DEFAULT_CHECK_TIMEOUT
    notify_timeout: float = DEFAULT_NOTIFY_TIMEOUT

    def notify(self, event: dict[str, Any]) -> list[str]:
        """Tell every notifier and notify command about ``event``; returns what failed
        (one line each), empty when every hook succeeded. Never raises."""
        failures = []
        for fn in self.notifiers:
            try:
                fn(event)
            except Exception as e:
                name = getattr(fn, "__qualname__", repr(fn))
                failures.append(f"notifier {name} raised {type(e).__name__}: {e}")
        for cmd in self.notify_commands:
            problem = notify_command(cmd, event, timeout=self.notify_timeout)
            if problem:
                failures.append(problem)
        return failures

    def health_check(
        self,
        check: HealthCheck,
        version: Version,
        ref: str,
        *,
        store: str = "",
        stage: str = "health-check",
    ) -> tuple[bool, str]:
        return run_health_check(
            check, version, ref, timeout=self.health_timeout, store=store, stage=stage
        )


def run_health_check(
    check: HealthCheck,
    version: Version,
    ref: str,
    *,
    timeout: float = DEFAULT_CHECK_TIMEOUT,
    store: str = "",
    stage: str = "health-check",
) -> tuple[bool, str]:
    """Run a callable or a shell command (exit 0 = healthy) against a version."""
    if callable(check):
        try:
            ok = bool(check(version))
        except Exception as e:  # a crashing check is a failed check
            return False, f"{stage} raised {type(e).__name__}: {e}"
        return ok, f"{stage} passed" if ok else f"{stage} returned false"
    env = dict(
        for_children(),
        CASSTORE_MODEL=version.model,
        CASSTORE_VERSION=version.version,
        CASSTORE_VERSION_NAME=version.name,
        CASSTORE_MANIFEST=version.id.hex(),
        CASSTORE_REF=ref,
        CASSTORE_STORE=store,
        CASSTORE_STAGE=stage,
    )
    import subprocess  # here, not at the top: most commands run no hook

    try:
        proc = subprocess.run(
            check, shell=True, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return False, f"{stage} timed out after {timeout:g}s: {check}"
    except OSError as e:
        return False, f"{stage} could not run: {e}"
    if proc.returncode == 0:
        return True, f"{stage} passed"
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
    return False, f"{stage} exited {proc.returncode}: {tail[0]}"


def notify_command(
    command: str, event: dict[str, Any], *, timeout: float = DEFAULT_NOTIFY_TIMEOUT
) -> str | None:
    """Send a JSON event on stdin to a shell command: None if it exited 0, else what failed."""
    import subprocess

    try:
        proc = subprocess.run(
            command,
            shell=True,
            input=json.dumps(event, default=str),
            text=True,
            timeout=timeout,
            capture_output=True,
            env=for_children(),
        )
    except subprocess.TimeoutExpired:
        return f"notify command timed out after {timeout:g}s: {command}"
    except (OSError, subprocess.SubprocessError) as e:
        return f"notify command could not run: {command}: {e}"
    if proc.returncode == 0:
        return None
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
    return f"notify command exited {proc.returncode}: {command}" + (
        f" ({tail[0]})" if tail[0] else ""
    )
