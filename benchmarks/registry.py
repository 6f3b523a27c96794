"""The registry of benchmark sections: each is a function ``fn(ctx) -> dict`` run by
``python -m benchmarks``, whose result lands in the JSON under its name and, through its
optional ``render`` and ``plot`` functions, in ``report.md`` and PNG files.

Adding a section (e.g. in a new module listed in :data:`SECTION_MODULES`)::

    @section("my_thing", "My thing vs its peers", requires=("some_module",))
    def my_thing(ctx: Context) -> dict:
        if not ready():
            raise Skip("why it cannot run here")
        return {...}

A section whose ``requires`` modules are missing, or that raises :class:`Skip`, is reported as
skipped with its reason; one that fails is reported as an error and the run goes on.
"""

from __future__ import annotations

import importlib
import importlib.util
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SECTION_MODULES = ["benchmarks.sections", "benchmarks.encoding_sections"]
"""Modules imported to register sections, in report order."""


class Skip(Exception):
    """Raised by a section that cannot run here; the message says why."""


@dataclass
class Context:
    """What every section sees: the options, the work dir, shared inputs and results."""

    size_mb: float
    quick: bool
    out: Path
    work: Path
    cold: bool = False
    log: Callable[[str], None] = print
    training_dir: Path | None = None  # checkpoints of an earlier `benchmarks.training` run
    shared: dict[str, Any] = field(default_factory=dict)  # e.g. the generated series
    results: dict[str, dict] = field(default_factory=dict)  # earlier sections' outcomes

    def data(self, name: str) -> dict | None:
        """An earlier section's data, or None if it did not run successfully."""
        r = self.results.get(name)
        return r.get("data") if r and r.get("status") == "ok" else None


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    fn: Callable[[Context], dict]
    requires: tuple[str, ...] = ()
    render: Callable[[dict], list[str]] | None = None  # markdown lines
    plot: Callable[[dict, Path], list[Path]] | None = None  # PNG files written


SECTIONS: dict[str, Section] = {}


def section(
    name: str,
    title: str,
    *,
    requires: tuple[str, ...] = (),
    render: Callable[[dict], list[str]] | None = None,
    plot: Callable[[dict, Path], list[Path]] | None = None,
) -> Callable[[Callable[[Context], dict]], Callable[[Context], dict]]:
    def register(fn: Callable[[Context], dict]) -> Callable[[Context], dict]:
        SECTIONS[name] = Section(name, title, fn, requires, render, plot)
        return fn

    return register


def load_sections() -> dict[str, Section]:
    for mod in SECTION_MODULES:
        importlib.import_module(mod)
    return SECTIONS


def run_section(s: Section, ctx: Context) -> dict:
    """Run one section; never raises (except KeyboardInterrupt)."""
    missing = [m for m in s.requires if importlib.util.find_spec(m) is None]
    if missing:
        return {"title": s.title, "status": "skipped", "reason": f"needs {', '.join(missing)}"}
    t0 = time.perf_counter()
    try:
        data = s.fn(ctx)
    except Skip as e:
        return {"title": s.title, "status": "skipped", "reason": str(e)}
    except Exception as e:
        return {
            "title": s.title,
            "status": "error",
            "reason": f"{type(e).__name__}: {e}",
            "traceback": traceback.format_exc(limit=8),
            "seconds": round(time.perf_counter() - t0, 2),
        }
    return {
        "title": s.title,
        "status": "ok",
        "seconds": round(time.perf_counter() - t0, 2),
        "data": data,
    }
