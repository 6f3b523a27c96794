"""How a quick rollback chooses its target: the reflog ops and triggers that mark a version
as rejected, and the rule in words. Plain data, importable without the rollout machinery
(``casstore rollback --help`` shows the rule; :mod:`casstore.ops.rollout` applies it)."""

from __future__ import annotations

DEFAULT_STEPS: tuple[float, ...] = (0.1, 0.5, 1.0)
"""Traffic fractions of a progressive rollout or rollback when none are given."""

REJECTING_OPS = frozenset({"rollback", "revert", "undo", "abort"})
"""Reflog ops that move a ref away from a version because it was bad."""
REJECTING_TRIGGERS = frozenset({"health-check", "metric-regression", "auto-revert"})
"""Triggers of moves that left a version because a check failed."""

PREVIOUS_STABLE_RULE = (
    "the last version this ref served before its current one (read from the ref's own "
    "reflog, newest first) that is a release or tagged stable, is not tagged deprecated, is "
    "still stored, and was not left by a rollback, revert, undo, abort or failed check; "
    "exit 3 if there is none"
)
"""How :meth:`~casstore.ops.rollout.Rollout.previous_stable` chooses, in words."""
