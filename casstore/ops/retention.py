"""Retention policies: which versions survive garbage collection, and why.

Every version any ref points at (both sides of a split) is always kept, and so is every version
the reflog pointed at within ``keep_reflog_seconds``. On top of that a policy keeps the last N
versions, versions within a duration, the newest (or best by a metric) per hour/day/week/month,
and versions with given tags or types. A policy with no rule at all is refused: it would expire
every version not under a ref.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType

from casstore.errors import InvalidInputError, NotFoundError
from casstore.records import Meta, Record
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


_Count = Annotated[int, Meta(ge=0)]
_Seconds = Annotated[float, Meta(ge=0)]
_UNSET_MEANS: dict[str, Any] = {"keep_best_lower": False, "keep_tags": (), "keep_types": ()}


class RetentionPolicy(Record, kw_only=True):
    """Which versions of a model GC keeps. Unset rules keep nothing by themselves.

    A policy remembers which rules it sets: a rule not given is ``msgspec.UNSET`` (falsy), not
    None, so an override replaces only the rules it sets (:meth:`merged`) and the stored file
    lists only those; an explicit None (``auto_gc_bytes=None``: ``--auto-gc off``) is kept and
    stored as null. :meth:`get` reads a rule with UNSET as None (``False``, ``()``)."""

    keep_last: _Count | UnsetType | None = UNSET
    keep_within_seconds: _Seconds | UnsetType | None = UNSET
    keep_hourly: _Count | UnsetType | None = UNSET
    keep_daily: _Count | UnsetType | None = UNSET
    keep_weekly: _Count | UnsetType | None = UNSET
    keep_monthly: _Count | UnsetType | None = UNSET
    # metric: periodic rules keep the best, not the newest
    keep_best: str | UnsetType | None = UNSET
    keep_best_lower: bool | UnsetType = UNSET  # the metric is lower-is-better
    keep_tags: tuple[str, ...] | UnsetType = UNSET
    keep_types: tuple[str, ...] | UnsetType = UNSET
    keep_reflog_seconds: _Seconds | UnsetType | None = UNSET
    # automatic cleanup after commits (see casstore.ops.autogc); not retention rules
    auto_gc_bytes: _Count | UnsetType | None = UNSET  # collect once this much is garbage
    auto_gc_grace_seconds: _Seconds | UnsetType | None = UNSET
    auto_gc_interval_seconds: _Seconds | UnsetType | None = UNSET

    def get(self, name: str) -> Any:
        """A rule's value; an unset rule reads as None (``keep_best_lower``: False,
        ``keep_tags``/``keep_types``: ())."""
        value = getattr(self, name)
        return _UNSET_MEANS.get(name) if value is UNSET else value

    def given(self) -> dict[str, Any]:
        """The rules this policy sets (explicit Nones included), in declaration order."""
        return {k: v for k in self.__struct_fields__ if (v := getattr(self, k)) is not UNSET}

    def is_empty(self) -> bool:
        return all(self.get(k) in (None, ()) for k in self.__struct_fields__
                   if k not in ("keep_best", "keep_best_lower") and not k.startswith("auto_gc"))

    def validated(self) -> RetentionPolicy:
        """This policy checked and converted as a stored one is (a constructed policy is not:
        ``keep_last=-1`` is refused here, ``keep_reflog_seconds=0`` becomes ``0.0``)."""
        return self.checked("retention policy")

    def check(self) -> RetentionPolicy:
        """This policy, validated; refused when it has no rule."""
        policy = self.validated()
        if policy.is_empty():
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
        return self.replace(**override.given())

    @property
    def reflog_seconds(self) -> float:
        seconds = self.get("keep_reflog_seconds")
        return DEFAULT_REFLOG_SECONDS if seconds is None else seconds

    def to_file(self) -> bytes:
        """The stored form: the rules it sets, as JSON indented by 2, byte for byte what
        earlier casstore versions wrote (tests/core/test_retention_format.py pins it)."""
        doc = {k: _json_float(v) if isinstance(v, float) else v
               for k, v in self.to_builtins().items()}
        return msgspec.json.format(msgspec.json.encode(doc), indent=2)

    def decide(self, versions: Sequence[Any], now: dt.datetime) -> dict[str, list[str]]:
        """semver -> reasons to keep, for the versions this policy keeps (refs aside)."""
        keep: dict[str, list[str]] = {}

        def add(v: Any, why: str) -> None:
            keep.setdefault(v.version, []).append(why)

        newest_first = sorted(versions, key=lambda v: v.created_at, reverse=True)
        keep_last, within = self.get("keep_last"), self.get("keep_within_seconds")
        keep_tags, keep_types = set(self.get("keep_tags")), self.get("keep_types")
        if keep_last:
            for v in newest_first[:keep_last]:
                add(v, f"last {keep_last}")
        if within is not None:
            horizon = now - dt.timedelta(seconds=within)
            for v in newest_first:
                if v.created_at >= horizon:
                    add(v, "within duration")
        for v in versions:
            if keep_tags and set(v.tags) & keep_tags:
                add(v, "tag " + ",".join(sorted(set(v.tags) & keep_tags)))
            if v.version_type in keep_types:
                add(v, f"type {v.version_type}")
        for period in ("hourly", "daily", "weekly", "monthly"):
            n = self.get(f"keep_{period}")
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
        best = self.get("keep_best")
        for key in sorted(buckets, reverse=True)[:n]:
            group = buckets[key]
            if best:
                scored = [v for v in group if best in v.metrics]
                if scored:
                    pick = (min if self.get("keep_best_lower") else max)(
                        scored, key=lambda v: v.metrics[best])
                    chosen.append(pick)
                    continue
            chosen.append(group[0])
        return chosen


def _json_float(value: float) -> msgspec.Raw:
    """A float as stored policies have always written it: the shortest round-trip text with a
    ``+`` in a positive exponent (``1e+20``, where msgspec writes ``1e20``)."""
    return msgspec.Raw(re.sub(rb"e(\d)", rb"e+\1", msgspec.json.encode(value)))


def load_policy(store: ObjectStore, model: str | None) -> RetentionPolicy | None:
    try:
        raw = store.get(policy_key(model))
    except NotFoundError:
        return None
    try:
        return msgspec.json.decode(raw, type=RetentionPolicy)
    except msgspec.DecodeError as e:  # not JSON, or not a policy (ValidationError)
        raise InvalidInputError(f"stored retention policy for {model or 'the store'} is "
                                f"invalid: {e}") from e


def save_policy(store: ObjectStore, model: str | None, policy: RetentionPolicy) -> None:
    """Store a policy; refused if the policy GC would then apply has no rule (a model's own
    policy may leave the rules to the store default, e.g. set only auto-gc)."""
    policy = policy.validated()
    if model is None:
        policy.check()
    else:
        (load_policy(store, None) or RetentionPolicy()).merged(policy).check()
    store.put(policy_key(model), policy.to_file())


def effective_policy(store: ObjectStore, model: str,
                     override: RetentionPolicy | None = None) -> RetentionPolicy:
    """Store default, then the model's stored policy, then the command-line override."""
    base = load_policy(store, None) or RetentionPolicy()
    model_policy = load_policy(store, model)
    return base.merged(model_policy).merged(override).check()
