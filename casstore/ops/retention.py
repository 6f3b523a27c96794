"""Retention policies: which versions survive garbage collection, and why.

Every version any ref points at (both sides of a split) is always kept, and so is every version
the reflog pointed at within ``keep_reflog_seconds``. On top of that a policy keeps the last N
versions, versions within a duration, the newest (or best by a metric) per hour/day/week/month,
and versions with given tags or types. A policy with no rule at all is refused: it would expire
every version not under a ref.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from casstore.errors import InvalidInputError, NotFoundError
from casstore.repo.keys import policy_key
from casstore.store.base import ObjectStore

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdwy]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
DEFAULT_REFLOG_SECONDS = 7 * 86400


def parse_duration(text: str | float | int) -> float:
    """Seconds in ``90``, ``30m``, ``12h``, ``7d``, ``2w``, ``1y`` (``0`` allowed)."""
    if isinstance(text, int | float):
        return float(text)
    m = _DURATION.fullmatch(str(text).strip())
    if not m:
        raise InvalidInputError(f"bad duration {text!r}: e.g. 0, 90s, 30m, 12h, 7d, 2w")
    return float(m[1]) * _UNITS[m[2]]


class RetentionPolicy(BaseModel):
    """Which versions of a model GC keeps. Unset rules keep nothing by themselves."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    keep_last: int | None = Field(default=None, ge=0)
    keep_within_seconds: float | None = Field(default=None, ge=0)
    keep_hourly: int | None = Field(default=None, ge=0)
    keep_daily: int | None = Field(default=None, ge=0)
    keep_weekly: int | None = Field(default=None, ge=0)
    keep_monthly: int | None = Field(default=None, ge=0)
    keep_best: str | None = None  # metric: periodic rules keep the best, not the newest
    keep_best_lower: bool = False  # the metric is lower-is-better
    keep_tags: tuple[str, ...] = ()
    keep_types: tuple[str, ...] = ()
    keep_reflog_seconds: float | None = Field(default=None, ge=0)
    # automatic cleanup after commits (see casstore.ops.autogc); not retention rules
    auto_gc_bytes: int | None = Field(default=None, ge=0)  # collect once this much is garbage
    auto_gc_grace_seconds: float | None = Field(default=None, ge=0)
    auto_gc_interval_seconds: float | None = Field(default=None, ge=0)

    def is_empty(self) -> bool:
        return all(v in (None, ()) for k, v in self
                   if k not in ("keep_best", "keep_best_lower") and not k.startswith("auto_gc"))

    def check(self) -> RetentionPolicy:
        if self.is_empty():
            raise InvalidInputError(
                "empty retention policy: it would expire every version not under a ref; give "
                "at least one rule (--keep-last, --keep-within, --keep-tag, --keep-type, "
                "--keep-daily ..., or --keep-reflog)"
            )
        return self

    def merged(self, override: RetentionPolicy | None) -> RetentionPolicy:
        """This policy with every rule the override sets replacing ours."""
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_unset=True))

    @property
    def reflog_seconds(self) -> float:
        return DEFAULT_REFLOG_SECONDS if self.keep_reflog_seconds is None else \
            self.keep_reflog_seconds

    def decide(self, versions: Sequence[Any], now: dt.datetime) -> dict[str, list[str]]:
        """semver -> reasons to keep, for the versions this policy keeps (refs aside)."""
        keep: dict[str, list[str]] = {}

        def add(v: Any, why: str) -> None:
            keep.setdefault(v.version, []).append(why)

        newest_first = sorted(versions, key=lambda v: v.created_at, reverse=True)
        if self.keep_last:
            for v in newest_first[: self.keep_last]:
                add(v, f"last {self.keep_last}")
        if self.keep_within_seconds is not None:
            horizon = now - dt.timedelta(seconds=self.keep_within_seconds)
            for v in newest_first:
                if v.created_at >= horizon:
                    add(v, "within duration")
        for v in versions:
            if self.keep_tags and set(v.tags) & set(self.keep_tags):
                add(v, "tag " + ",".join(sorted(set(v.tags) & set(self.keep_tags))))
            if v.version_type in self.keep_types:
                add(v, f"type {v.version_type}")
        for period, n in (("hourly", self.keep_hourly), ("daily", self.keep_daily),
                          ("weekly", self.keep_weekly), ("monthly", self.keep_monthly)):
            if n:
                for v in self._periodic(newest_first, period, n):
                    add(v, period)
        return keep

    def _periodic(self, newest_first: Sequence[Any], period: str, n: int) -> list[Any]:
        buckets: dict[str, list[Any]] = {}
        for v in newest_first:
            t = v.created_at
            key = {"hourly": f"{t:%Y%m%d%H}", "daily": f"{t:%Y%m%d}",
                   "weekly": "{}-{}".format(*t.isocalendar()[:2]), "monthly": f"{t:%Y%m}"}[period]
            buckets.setdefault(key, []).append(v)
        chosen = []
        for key in sorted(buckets, reverse=True)[:n]:
            group = buckets[key]
            if self.keep_best:
                scored = [v for v in group if self.keep_best in v.metrics]
                if scored:
                    pick = (min if self.keep_best_lower else max)(
                        scored, key=lambda v: v.metrics[self.keep_best])
                    chosen.append(pick)
                    continue
            chosen.append(group[0])
        return chosen


def load_policy(store: ObjectStore, model: str | None) -> RetentionPolicy | None:
    try:
        raw = store.get(policy_key(model))
    except NotFoundError:
        return None
    try:
        return RetentionPolicy.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as e:
        raise InvalidInputError(f"stored retention policy for {model or 'the store'} is "
                                f"invalid: {e}") from e


def save_policy(store: ObjectStore, model: str | None, policy: RetentionPolicy) -> None:
    """Store a policy; refused if the policy GC would then apply has no rule (a model's own
    policy may leave the rules to the store default, e.g. set only auto-gc)."""
    if model is None:
        policy.check()
    else:
        (load_policy(store, None) or RetentionPolicy()).merged(policy).check()
    store.put(policy_key(model), policy.model_dump_json(exclude_unset=True, indent=2).encode())


def effective_policy(store: ObjectStore, model: str,
                     override: RetentionPolicy | None = None) -> RetentionPolicy:
    """Store default, then the model's stored policy, then the command-line override."""
    base = load_policy(store, None) or RetentionPolicy()
    model_policy = load_policy(store, model)
    return base.merged(model_policy).merged(override).check()
