"""Environment variables a casstore command sets for its own process only.

The CLI's bulk commands tune libraries they load lazily through the environment (numpy's
OpenBLAS reads ``OPENBLAS_NUM_THREADS`` when numpy is imported: see
:mod:`casstore.cli._malloc`). The commands casstore runs for the user (health checks,
notification commands, metrics commands) must not inherit those settings: a health check that
evaluates a model with numpy would otherwise run single-threaded. They get
:func:`for_children`, the environment without what casstore set for itself.
"""

from __future__ import annotations

import os

_SET: dict[str, str] = {}


def set_for_self(name: str, value: str) -> None:
    """Set ``name`` in this process's environment, not in its children's."""
    os.environ[name] = value
    _SET[name] = value


def for_children() -> dict[str, str]:
    """This process's environment without the variables casstore set for itself (a value
    someone changed since is kept)."""
    out = dict(os.environ)
    for name, value in _SET.items():
        if out.get(name) == value:
            del out[name]
    return out
