"""Filtering versions: by tag, type, metric conditions such as ``accuracy>=0.9``, string
params such as ``param.optimizer=adamw``, and dates."""

from __future__ import annotations

import datetime as dt
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from casstore.errors import InvalidInputError

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "!=": operator.ne,
    "==": operator.eq,
    ">": operator.gt,
    "<": operator.lt,
    "=": operator.eq,
}
_COND = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*(>=|<=|!=|==|>|<|=)\s*(\S+)\s*")
PARAM_PREFIX = "param."
_PARAM_COND = re.compile(r"\s*param\.([A-Za-z_][A-Za-z0-9_.\-]*?)\s*(!=|==|=)(.*)")


@dataclass(frozen=True)
class MetricCondition:
    metric: str
    op: str
    value: float

    def __call__(self, metrics: dict[str, float]) -> bool:
        v = metrics.get(self.metric)
        return v is not None and _OPS[self.op](v, self.value)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


@dataclass(frozen=True)
class ParamCondition:
    """``param.NAME=VALUE`` (or ``!=``): compares a version's string param as text; a version
    without the param matches only ``!=``."""

    param: str
    op: str
    value: str

    def __call__(self, params: dict[str, str]) -> bool:
        v = params.get(self.param)
        return (v == self.value) if self.op in ("=", "==") else (v != self.value)

    def __str__(self) -> str:
        return f"{PARAM_PREFIX}{self.param}{self.op}{self.value}"


Condition = MetricCondition | ParamCondition


def parse_condition(text: str) -> Condition:
    """``accuracy>=0.9`` (a metric, compared as a number) or ``param.optimizer=adamw``."""
    if text.lstrip().startswith(PARAM_PREFIX):
        p = _PARAM_COND.fullmatch(text)
        if not p:
            raise InvalidInputError(
                f"bad param condition {text!r}: expected param.NAME=VALUE or param.NAME!=VALUE"
            )
        return ParamCondition(p[1], p[2], p[3].strip())
    m = _COND.fullmatch(text)
    if not m:
        raise InvalidInputError(f"bad metric condition {text!r}: expected e.g. accuracy>=0.9")
    try:
        value = float(m[3])
    except ValueError:
        raise InvalidInputError(f"bad number in metric condition {text!r}") from None
    return MetricCondition(m[1], m[2], value)


WHEN_HELP = "YYYY-MM-DD, an ISO datetime (UTC unless it says), or a time ago: 90s, 30m, 12h, 7d, 2w"
_AGO = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])(?:\s+ago)?")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_when(
    text: str, *, end: bool = False, now: dt.datetime | None = None
) -> dt.datetime:
    """A date, an ISO datetime or a time ago (``7d``: seven days before ``now``); naive values
    are UTC. A bare date as an end covers that day."""
    ago = _AGO.fullmatch(text.strip().lower()) if isinstance(text, str) else None
    if ago:
        now = now or dt.datetime.now(dt.timezone.utc)
        return now - dt.timedelta(seconds=float(ago[1]) * _UNIT[ago[2]])
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            d = dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)
            return d + dt.timedelta(days=1) - dt.timedelta(microseconds=1) if end else d
        d = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(f"bad time {text!r}: use {WHEN_HELP}") from None
    return d if d.tzinfo else d.replace(tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class Query:
    """What to look for. Every given criterion must hold."""

    tags: Sequence[str] = ()
    version_type: str | None = None
    where: Sequence[Condition] = ()
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def matches(self, version: object) -> bool:
        m = version.manifest  # type: ignore[attr-defined]
        tags = set(version.tags)  # type: ignore[attr-defined]
        return (
            all(t in tags for t in self.tags)
            and (self.version_type is None or m.version_type == self.version_type)
            and all(
                c(m.params) if isinstance(c, ParamCondition) else c(m.performance_metrics)
                for c in self.where
            )
            and (self.since is None or m.created_at >= self.since)
            and (self.until is None or m.created_at <= self.until)
        )
