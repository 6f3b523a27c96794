"""Terminal output for the CLI: tables, byte sizes, progress bars. The library never prints."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def plain(value: Any, sep: str = " ") -> str:
    """A value for people, never Python syntax: mappings as ``k=v``, lists joined with
    commas, None as ``-``, numbers with ``:g``."""
    if value is None:
        return "-"
    if isinstance(value, dict):
        return sep.join(f"{k}={plain(v, ',')}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(plain(v, ",") for v in value) or "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def emit_json(doc: Any, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    json.dump(doc, out, indent=2, default=str, ensure_ascii=False)
    out.write("\n")


def table(rows: Sequence[Sequence[Any]], header: Sequence[str], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    cells = [[str(c) for c in header]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for i, r in enumerate(cells):
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")
        if i == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")


def signature_rows(sigs: Sequence[Any]) -> list[list[str]]:
    return [
        [
            s.keyid[:12],
            s.key_name or "-",
            s.signer or "-",
            s.signed_at[:19] or "-",
            "valid" if s.ok else f"NOT VALID: {s.problem}",
        ]
        for s in sigs
    ]


SIGNATURE_HEADER = ["key", "trusted as", "signer", "signed at (UTC)", "status"]


class ProgressBar:
    """A byte-count progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, total: int, label: str = "", stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.done = 0
        self._t0 = time.monotonic()
        self._last = 0.0

    def __call__(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and self.done < self.total:
            return
        self._last = now
        frac = min(1.0, self.done / self.total)
        rate = self.done / max(now - self._t0, 1e-9)
        bar = "#" * int(frac * 30)
        self.stream.write(
            f"\r{self.label} [{bar:<30}] {frac:6.1%} {human_bytes(self.done)} "
            f"{human_bytes(rate)}/s "
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
