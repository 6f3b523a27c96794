"""Regression policies: when is a candidate version's metric worse enough to refuse or roll back,
and :func:`check_regression`, which applies one to a ref (rolling back or refusing).

A policy is a list of rules, one per metric: higher-is-better or lower-is-better, with an
absolute or relative threshold against the baseline, and/or limits on the value itself
(``max``, ``min``). Loaded from JSON::

    {"rules": [
        {"metric": "accuracy", "direction": "higher", "threshold": 0.01},
        {"metric": "loss", "direction": "lower", "threshold": 0.05, "relative": true},
        {"metric": "error_rate", "max": 0.05}
    ]}

A rule with a limit compares with the baseline only if it also gives a threshold; a rule
without a limit compares with threshold 0 by default. :class:`WatchPolicy` (``casstore watch``)
adds the window of live figures, the minimum sample size, the sustained-violation time and the
number of rollback attempts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from msgspec.structs import force_setattr

from casstore.errors import ConflictError, InvalidInputError, NotFoundError
from casstore.ops.retention import parse_duration
from casstore.ops.rollout import Rollout
from casstore.records import Meta, Record, ValidationError

POLICY_FORMAT = (
    '{"rules": [{"metric": NAME, "direction": "higher"|"lower", "threshold": NUMBER, '
    '"relative": BOOL, "required": BOOL, "max": NUMBER, "min": NUMBER}, ...]} '
    "(only metric is required)"
)
"""The policy file format in one line, for errors and ``--help``."""


class MetricRule(Record, kw_only=True):
    metric: str
    direction: Literal["higher", "lower"] = "higher"
    threshold: Annotated[float, Meta(ge=0.0)] | None = None  # allowed worsening vs baseline
    relative: bool = False  # threshold is a fraction of the baseline value
    required: bool = False  # a candidate missing this metric violates the rule
    max: float | None = None  # the value itself must stay at or below this
    min: float | None = None  # ... and at or above this

    def check(self, candidate: dict[str, float], baseline: dict[str, float]) -> str | None:
        """A description of the violation, or None when the rule holds."""
        c, b = candidate.get(self.metric), baseline.get(self.metric)
        if c is None:
            return f"{self.metric} missing from candidate" if self.required else None
        if self.max is not None and c > self.max:
            return f"{self.metric} {c:g} above the limit {self.max:g}"
        if self.min is not None and c < self.min:
            return f"{self.metric} {c:g} below the limit {self.min:g}"
        limited = self.max is not None or self.min is not None
        threshold = self.threshold if self.threshold is not None else None if limited else 0.0
        if b is None or threshold is None:
            return None
        worse = (b - c) if self.direction == "higher" else (c - b)
        allowed = threshold * abs(b) if self.relative else threshold
        if worse > allowed + 1e-12:
            kind = f"{threshold:.2%} relative" if self.relative else f"{threshold:g}"
            return (
                f"{self.metric} {b:g} -> {c:g} ({'-' if self.direction == 'higher' else '+'}"
                f"{abs(worse):g}, allowed {kind}, {self.direction} is better)"
            )
        return None


class RegressionPolicy(Record, kw_only=True):
    KIND: ClassVar[str] = "regression policy"
    FORMAT: ClassVar[str] = POLICY_FORMAT
    rules: Annotated[tuple[MetricRule, ...], Meta(min_length=1)]

    def violations(self, candidate: dict[str, float], baseline: dict[str, float]) -> list[str]:
        return [v for r in self.rules if (v := r.check(candidate, baseline)) is not None]

    @classmethod
    def load(cls, path: str | Path) -> Self:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise InvalidInputError(f"cannot read policy {path}: {e.strerror}") from e
        except UnicodeDecodeError as e:
            raise InvalidInputError(f"policy {path} is not UTF-8 text: {e.reason}") from None
        return cls.parse(text, str(path))

    @classmethod
    def parse(cls, text: str, where: str = "policy") -> Self:  # type: ignore[override]
        """The policy in JSON ``text`` (unlike :meth:`Record.parse`, which takes decoded data);
        InvalidInputError naming ``where`` and the problem when it is not one."""
        try:
            data = json.loads(text)
        except ValueError as e:
            raise InvalidInputError(f"{where} is not JSON: {e}") from None
        try:
            return super().parse(data)
        except ValidationError as e:
            raise InvalidInputError(
                f"{where} is not a valid {cls.KIND} ({_problem(cls, e)}); expected {cls.FORMAT}"
            ) from None


def _problem(cls: type[RegressionPolicy], e: ValidationError) -> str:
    """msgspec's "Expected `float` >= 0.0 - at `$.rules[0].threshold`" as
    "rules.0.threshold: Expected `float` >= 0.0", a missing or unknown key and a value not
    among a field's choices said at the key, a problem of the whole policy unchanged."""
    msg, sep, at = str(e).rpartition(" - at `$")
    if not sep:
        msg, at = str(e), ""
    path: list[str] = [m[0] or m[1] for m in re.findall(r"\.([^.\[`]+)|\[(\d+)\]", at)]
    if m := re.fullmatch(r"Object missing required field `(.+)`", msg):
        path, msg = [*path, m[1]], "Field required"
    elif m := re.fullmatch(r"Object contains unknown field `(.+)`", msg):
        path, msg = [*path, m[1]], "unknown field"
    elif msg.startswith("Invalid enum value") and (choices := _choices(cls, path)):
        msg = "Input should be " + " or ".join(
            filter(None, [", ".join(map(repr, choices[:-1])), repr(choices[-1])]))
    return f"{'.'.join(path)}: {msg}" if path else msg


def _choices(cls: type, path: list[str]) -> tuple[Any, ...]:
    """The values a Literal field at ``path`` (field names and indexes) allows, or ()."""
    from msgspec import inspect

    t: Any = inspect.type_info(cls)
    for key in [*path, None]:
        while isinstance(t, inspect.Metadata):
            t = t.type
        if key is None:
            break
        if isinstance(t, inspect.StructType):
            t = next((f.type for f in t.fields if f.encode_name == key), None)
        elif isinstance(t, inspect.VarTupleType | inspect.ListType) and key.isdigit():
            t = t.item_type
        else:
            return ()
    return tuple(t.values) if isinstance(t, inspect.LiteralType) else ()


class WatchPolicy(RegressionPolicy, kw_only=True):
    """A regression policy for live figures (``casstore watch``); see the README's
    "Automatic rollback" for the file format. Durations are seconds or text (``30s``)."""

    # durations: seconds, or text such as "90s", "5m" that __post_init__ turns into seconds
    window: Annotated[float, Meta(gt=0)] | str = 60.0  # judge the figures of the last N seconds
    min_requests: Annotated[int, Meta(ge=0)] = 100  # fewer requests in the window: no verdict
    sustain: Annotated[float, Meta(ge=0)] | str = 0.0  # a violation must last this long to act
    max_attempts: Annotated[int, Meta(ge=1)] = 3  # rollback targets tried (health checks)

    KIND: ClassVar[str] = "watch policy"
    FORMAT: ClassVar[str] = (
        POLICY_FORMAT[:-len(" (only metric is required)")] + ' plus "window": SECONDS|"60s", '
        '"min_requests": N, "sustain": SECONDS|"2m", "max_attempts": N (only rules[].metric '
        "is required)"
    )

    def __post_init__(self) -> None:
        for name, positive in (("window", True), ("sustain", False)):
            value = getattr(self, name)
            if isinstance(value, str):
                try:
                    value = parse_duration(value)
                except InvalidInputError as e:
                    raise ValueError(f"{name}: {e}") from None
                if positive and value <= 0:
                    raise ValueError(f"{name}: must be > 0, got {value:g}")
                force_setattr(self, name, value)
            elif isinstance(value, int) and not isinstance(value, bool):
                force_setattr(self, name, float(value))  # 60 reads as 60.0, as a float field


def check_regression(
    rollout: Rollout,
    model: str,
    policy: RegressionPolicy,
    *,
    ref: str = "current",
    candidate: str | None = None,
    metrics: dict[str, float] | None = None,
    act: bool = True,
    reason: str = "",
) -> dict[str, Any]:
    """Compare a candidate's metrics with a baseline under ``policy``.

    Without ``candidate``: the candidate is what ``ref`` points at now and the baseline what
    it pointed at before its last move; a violation rolls ``ref`` back (trigger
    ``metric-regression``). With ``candidate``: the baseline is what ``ref`` points at; a
    violation refuses the promotion, otherwise (``act``) the candidate is promoted.
    ``metrics`` overrides the candidate's recorded metrics (e.g. measured in production).
    """
    rec, _ = rollout.refs.read(model, ref)
    if rec is None or rec.value is None:
        raise NotFoundError(f"model {model!r} has no ref {ref!r}")
    current = rec.value.target or rec.value.split.candidate  # type: ignore[union-attr]
    if candidate is None:
        cand = rollout.ctx.get_version(model, current.version)
        prev = rec.entry.old
        if prev is None:
            raise NotFoundError(f"{model}@{ref} has no earlier version to compare with")
        base = rollout.ctx.get_version(model, (prev.target or prev.split.base).version)  # type: ignore[union-attr]
    else:
        cand = rollout.ctx.get_version(model, candidate)
        base = rollout.ctx.get_version(model, current.version)
    observed = {**cand.metrics, **(metrics or {})}
    violations = policy.violations(observed, dict(base.metrics))
    out: dict[str, Any] = {
        "model": model,
        "ref": ref,
        "candidate": cand.version,
        "baseline": base.version,
        "violations": violations,
        "action": "none",
    }
    if not violations:
        if candidate is not None and act:
            r = rollout.promote(
                model,
                cand.version,
                ref=ref,
                trigger="promote",
                reason=reason or "passed regression policy",
            )
            out["action"] = "promoted" if r.ok else "refused"
            out["result"] = r.to_dict()
        return out
    why = reason or "metric regression: " + "; ".join(violations)
    if candidate is not None:
        out["action"] = "refused-promotion"
    elif act:
        try:
            r = rollout.set_ref(
                model, ref, base.version, reason=why, trigger="metric-regression", op="rollback"
            )
        except ConflictError as e:
            out["action"] = f"rollback-conflict: {e}"
        else:
            out["action"] = "rolled-back" if r.ok else "rollback-refused"
            out["result"] = r.to_dict()
    return out
