"""Filtering versions: by tag, type, metric conditions such as ``accuracy>=0.9``, string
params such as ``param.optimizer=adamw``, and dates; ordering by a metric
(``--order-by accuracy:desc``) and a limit."""

from __future__ import annotations

import datetime as dt
import operator
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True)
class Order:
    """Sort by a metric; versions without it come last."""

    metric: str
    descending: bool = True

    def sort(self, versions: list[Any]) -> list[Any]:
        have = [v for v in versions if self.metric in v.metrics]
        lack = [v for v in versions if self.metric not in v.metrics]
        have.sort(key=lambda v: v.metrics[self.metric], reverse=self.descending)
        return have + lack


def parse_order(text: str) -> Order:
    """``METRIC``, ``METRIC:desc`` (the default: best first for higher-is-better) or
    ``METRIC:asc``."""
    metric, _, way = text.partition(":")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]*", metric) or way not in ("", "asc", "desc"):
        raise InvalidInputError(f"bad order {text!r}: expected METRIC, METRIC:asc or METRIC:desc")
    return Order(metric, way != "asc")


@dataclass(frozen=True)
class Query:
    """What to look for (every given criterion must hold), in which order, how many."""

    tags: Sequence[str] = ()
    version_type: str | None = None
    where: Sequence[Condition] = ()
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    order: Order | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.limit is not None and (isinstance(self.limit, bool) or
                                       not isinstance(self.limit, int) or self.limit < 0):
            raise InvalidInputError(f"limit must be a whole number >= 0, not {self.limit!r}")

    def matches(self, version: Any) -> bool:
        tags = set(version.tags)
        return (
            all(t in tags for t in self.tags)
            and (self.version_type is None or version.version_type == self.version_type)
            and all(
                c(version.params) if isinstance(c, ParamCondition) else c(version.metrics)
                for c in self.where
            )
            and (self.since is None or version.created_at >= self.since)
            and (self.until is None or version.created_at <= self.until)
        )

    def apply(self, versions: Iterable[Any]) -> list[Any]:
        """The matching versions, ordered, limited."""
        found = [v for v in versions if self.matches(v)]
        if self.order is not None:
            found = self.order.sort(found)
        return found if self.limit is None else found[: self.limit]
