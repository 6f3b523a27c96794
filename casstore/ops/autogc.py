"""Automatic cleanup after a commit: opt-in per store or model (``policy set --auto-gc``).

After a commit, when the model's effective policy sets ``auto_gc_bytes``, the garbage the
retention policy would free is measured (a GC plan for that model) and, at or past the
threshold, collected with the policy's grace (``auto_gc_grace_seconds``, default 1 h).

Cost: a plan lists the store and reads the model's manifests, O(history) requests, so it runs
at most once per ``auto_gc_interval_seconds`` (default 10 min) per model, store-wide: every
commit reads one small object, ``gc/auto/<model>`` (when the last check ran), and only the
committer that wins the compare-and-swap on it checks. With auto-gc off a commit reads just
the two policy objects.

It never fails or blocks a commit: it runs after the commit's write session has closed, a GC
already sweeping makes it skip, in-flight writers are waited for at most ``AUTO_WAIT``
seconds (then it skips), and any other error is reported, not raised. The commit's result
says what happened (:class:`AutoGcOutcome`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

from casstore.errors import ConflictError, NotFoundError, UnsupportedError
from casstore.ops.gc import DEFAULT_GRACE_SECONDS, GarbageCollector
from casstore.ops.retention import RetentionPolicy, load_policy
from casstore.repo.context import StoreContext
from casstore.repo.keys import auto_gc_key

DEFAULT_INTERVAL_SECONDS = 600.0
AUTO_WAIT = 5.0
"""Seconds an automatic sweep waits for other writers to finish before it gives up."""

State = Literal["collected", "below-threshold", "skipped", "failed"]


@dataclass(frozen=True)
class AutoGcOutcome:
    """What the automatic cleanup after a commit did."""

    state: State
    detail: str = ""
    garbage_bytes: int = 0  # what the plan would free
    threshold: int = 0
    bytes_freed: int = 0
    versions_expired: int = 0
    objects_deleted: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        if self.state == "collected":
            return (f"auto-gc: expired {self.versions_expired} versions, deleted "
                    f"{self.objects_deleted} objects, freed {self.bytes_freed} bytes")
        if self.state == "below-threshold":
            return (f"auto-gc: {self.garbage_bytes} bytes of garbage, below the threshold of "
                    f"{self.threshold}: nothing collected")
        return f"auto-gc {self.state}: {self.detail}"


def configured(ctx: StoreContext, model: str) -> RetentionPolicy | None:
    """The model's effective policy if it turns automatic cleanup on (two small reads)."""
    base = load_policy(ctx.store, None) or RetentionPolicy()
    policy = base.merged(load_policy(ctx.store, model))
    return policy if policy.get("auto_gc_bytes") is not None else None


def after_commit(ctx: StoreContext, model: str, *, now: float | None = None
                 ) -> AutoGcOutcome | None:
    """Collect the model's garbage if its policy asks and the check is due; None when auto-gc
    is off or not due. Never raises (a failure is an outcome)."""
    try:
        policy = configured(ctx, model)
        if policy is None:
            return None
        if ctx.in_session():
            return AutoGcOutcome("skipped", "the caller holds a write session")
        now = time.time() if now is None else now
        interval = policy.get("auto_gc_interval_seconds")
        if not _claim(ctx, model, DEFAULT_INTERVAL_SECONDS if interval is None else interval,
                      now):
            return None
        policy.check()
        grace = policy.get("auto_gc_grace_seconds")
        collector = GarbageCollector(
            ctx, grace_seconds=DEFAULT_GRACE_SECONDS if grace is None else grace,
            wait_timeout=AUTO_WAIT,
        )
        plan = collector.plan(None, [model])
        threshold = policy.get("auto_gc_bytes") or 0
        if plan.bytes_freed < threshold or not plan.bytes_freed:
            return AutoGcOutcome("below-threshold", garbage_bytes=plan.bytes_freed,
                                 threshold=threshold)
        report = collector.execute(plan)
        return AutoGcOutcome(
            "collected", garbage_bytes=plan.bytes_freed, threshold=threshold,
            bytes_freed=report.bytes_freed, versions_expired=report.versions_expired,
            objects_deleted=report.objects_deleted,
        )
    except ConflictError as e:  # another GC sweeping, or writers still in flight
        return AutoGcOutcome("skipped", str(e))
    except Exception as e:
        return AutoGcOutcome("failed", f"{type(e).__name__}: {e}")


def _claim(ctx: StoreContext, model: str, interval: float, now: float) -> bool:
    """True if this committer runs the check: the last one is ``interval`` old and this
    process won the compare-and-swap that records the new one."""
    key = auto_gc_key(model)
    try:
        raw, token = ctx.store.get_with_token(key)
        last = float(json.loads(raw)["checked_at"])
    except NotFoundError:
        token, last = None, None
    except (ValueError, KeyError, TypeError):  # unreadable: take it over
        token, last = ctx.store.get_with_token(key)[1], None
    if last is not None and now - last < interval:
        return False
    body = json.dumps({"checked_at": now, "by": ctx.actor}).encode()
    try:
        ctx.store.replace_if_match(key, body, token)
    except ConflictError:
        return False  # another committer checks now
    except UnsupportedError:  # no conditional writes: the sweep lease still serialises GCs
        ctx.store.put(key, body)
    return True
