"""Live figures: what a follower saw while serving, per version, over a sliding window.

A follower counts requests, errors and latencies, and the numbers the application reports
(``follower.record("accuracy", 0.93)``), per served version (both sides of a split apart), in
time slices of ``slice_seconds``; it keeps the slices of the last ``retain`` seconds and puts
them in its acknowledgement on every heartbeat. ``casstore watch`` merges the slices of every
live follower that fall in its policy's window and derives the figures a policy judges:
``requests``, ``errors``, ``error_rate``, ``latency_mean_ms``, ``latency_p50_ms`` / ``p90`` /
``p95`` / ``p99`` and the mean of each application metric under its own name.

Latencies go into a sparse histogram with logarithmic buckets 4 % wide (the idea of DDSketch:
a percentile read from it is within 2 % of the exact one), which merges exactly across
followers and slices by adding counts; it stays a few hundred bytes of JSON per version.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

GAMMA = 1.04
"""Ratio between bucket bounds: a percentile is reported within (GAMMA - 1) / 2 of the truth."""
_LOG_GAMMA = math.log(GAMMA)
_MIN_MS = 1e-3  # latencies below a microsecond share the lowest bucket
PERCENTILES = (50, 90, 95, 99)
BASE_FIGURES = ("requests", "errors", "error_rate", "latency_mean_ms") + tuple(
    f"latency_p{p}_ms" for p in PERCENTILES
)
"""The figures derived from requests; application metrics add their own names."""


def _bucket(ms: float) -> int:
    return math.ceil(math.log(max(ms, _MIN_MS)) / _LOG_GAMMA)


def _bucket_value(index: int) -> float:
    """The value that represents a bucket (its bounds' harmonic middle): within 2 %."""
    return 2 * GAMMA**index / (GAMMA + 1)


def _new_side() -> dict[str, Any]:
    return {"requests": 0, "errors": 0, "latency_ms_sum": 0.0, "latency": {}, "metrics": {}}


class LiveWindow:
    """Thread-safe counters of one follower, per version, in slices of ``slice_seconds``."""

    def __init__(
        self,
        retain: float = 120.0,
        slice_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not (slice_seconds > 0 and retain >= slice_seconds):
            raise ValueError("need slice_seconds > 0 and retain >= slice_seconds")
        self.retain, self.slice = float(retain), float(slice_seconds)
        self.clock = clock
        self._lock = threading.Lock()
        self._slices: dict[int, dict[str, dict[str, Any]]] = {}  # slice index -> version -> side

    def _side(self, version: str) -> dict[str, Any]:
        now = int(self.clock() // self.slice)
        cur = self._slices.get(now)
        if cur is None:
            cur = self._slices[now] = {}
            self._drop_old()
        side = cur.get(version)
        if side is None:
            side = cur[version] = _new_side()
        return side

    def observe(self, version: str, seconds: float, ok: bool = True) -> None:
        """One request answered by ``version`` in ``seconds`` (``ok=False``: it failed)."""
        ms = max(0.0, float(seconds)) * 1000.0
        b = str(_bucket(ms))
        with self._lock:
            side = self._side(version)
            side["requests"] += 1
            side["errors"] += 0 if ok else 1
            side["latency_ms_sum"] += ms
            side["latency"][b] = side["latency"].get(b, 0) + 1

    def record(self, version: str, metric: str, value: float) -> None:
        """A number the application measured while ``version`` served (e.g. accuracy)."""
        value = float(value)
        if not math.isfinite(value):
            return  # a NaN would poison every mean it joins; drop it
        with self._lock:
            m = self._side(version)["metrics"].setdefault(metric, [0, 0.0])
            m[0] += 1
            m[1] += value

    def snapshot(self) -> dict[str, Any]:
        """The retained slices as JSON-ready data (what goes into the acknowledgement)."""
        with self._lock:
            self._drop_old()
            return {
                "slice_seconds": self.slice,
                "slices": [
                    {"start": i * self.slice, "versions": _copy(v)}
                    for i, v in sorted(self._slices.items())
                ],
            }

    def _drop_old(self) -> None:
        now = int(self.clock() // self.slice)
        keep = math.ceil(self.retain / self.slice)
        for old in [i for i in self._slices if i <= now - keep]:
            del self._slices[old]


def _copy(versions: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        v: {**s, "latency": dict(s["latency"]), "metrics": {k: list(m) for k, m in
                                                            s["metrics"].items()}}
        for v, s in versions.items()
    }


def merge(
    snapshots: Iterable[dict[str, Any]],
    *,
    since: float,
    fresh_since: Mapping[str, float] | None = None,
) -> dict[str, dict[str, Any]]:
    """Add up, per version, every slice that ends after ``since`` (a time.time()), or after
    ``fresh_since[version]`` if that is later (a version the ref has only just been moved to
    counts from that move on, not what it did the last time it served)."""
    out: dict[str, dict[str, Any]] = {}
    fresh = fresh_since or {}
    for snap in snapshots:
        length = float(snap.get("slice_seconds", 0))
        for sl in snap.get("slices", ()):
            end = float(sl.get("start", 0)) + length
            for version, side in sl.get("versions", {}).items():
                if end <= max(since, fresh.get(version, since)):
                    continue
                acc = out.setdefault(version, _new_side())
                acc["requests"] += int(side.get("requests", 0))
                acc["errors"] += int(side.get("errors", 0))
                acc["latency_ms_sum"] += float(side.get("latency_ms_sum", 0.0))
                for b, n in side.get("latency", {}).items():
                    acc["latency"][b] = acc["latency"].get(b, 0) + int(n)
                for name, (n, total) in side.get("metrics", {}).items():
                    m = acc["metrics"].setdefault(name, [0, 0.0])
                    m[0] += int(n)
                    m[1] += float(total)
    return out


def figures(side: dict[str, Any]) -> dict[str, float]:
    """The numbers a policy judges, from one version's merged counters."""
    n, errors = side["requests"], side["errors"]
    out: dict[str, float] = {"requests": float(n), "errors": float(errors)}
    if n:
        out["error_rate"] = errors / n
        out["latency_mean_ms"] = side["latency_ms_sum"] / n
        buckets = sorted((int(b), c) for b, c in side["latency"].items())
        for p in PERCENTILES:
            rank, seen = p / 100 * (n - 1), 0
            for b, c in buckets:
                seen += c
                if seen > rank:
                    out[f"latency_p{p}_ms"] = _bucket_value(b)
                    break
    for name, (count, total) in side["metrics"].items():
        if count and name not in out:
            out[name] = total / count
    return out


def live_figures(
    snapshots: Iterable[dict[str, Any]],
    *,
    window: float,
    now: float | None = None,
    fresh_since: Mapping[str, float] | None = None,
) -> dict[str, dict[str, float]]:
    """version -> figures over the last ``window`` seconds of the given acknowledgements'
    slices (a slice counts if it ends inside the window; see :func:`merge`)."""
    now = time.time() if now is None else now
    merged = merge(snapshots, since=now - window, fresh_since=fresh_since)
    return {v: figures(s) for v, s in merged.items()}
