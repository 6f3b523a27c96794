"""Child processes for multi-process tests, forked from a server that has casstore imported.

A spawned child pays about a second of CPU importing casstore (and pytest, the parent's main
module) before it does anything; the many racing and killed children of the test suite add up
to minutes. A forkserver child starts from a clean single-threaded server with
:mod:`casstore.testing._workers`, the CLI and pytest already imported. It gets this process's
environment as it is when the child starts, not the server's.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import Any

from casstore.testing import _workers

CONTEXT = multiprocessing.get_context("forkserver")
# the CLI and pytest too: a child whose target lives in a test module imports that module,
# which imports both (a second of CPU per child otherwise); a module missing here is skipped
CONTEXT.set_forkserver_preload(["casstore.testing._workers", "casstore.cli", "pytest"])


def child(target: Callable[..., None], *args: Any) -> BaseProcess:
    """A (not yet started) child process running ``target(*args)``; ``target`` must be
    importable by name (a module-level function)."""
    return CONTEXT.Process(
        target=_workers.in_environment, args=(dict(os.environ), target, *args)
    )
