"""Ref operations: promote, rollback (quick, targeted, progressive), health checks, triggers.

The seed's rollback flow: the old pointer is kept in the reflog (no data is copied); the target
is verified before the switch; the switch is one compare-and-swap; a health check runs after
it and, on failure, the ref is switched back automatically; every move is logged and fires the
notification hooks (Python callables and a shell command that reads a JSON event on stdin).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from casstore.errors import InvalidInputError, NotFoundError
from casstore.ops.hooks import HealthCheck, Hooks
from casstore.repo.catalog import Version
from casstore.repo.context import StoreContext
from casstore.repo.keys import chunk_key, manifest_key, version_key
from casstore.repo.refs import ReflogEntry, RefStore, RefValue, Split, Target, Trigger
from casstore.repo.versioning import semver_key

DEFAULT_STEPS: tuple[float, ...] = (0.1, 0.5, 1.0)


@dataclass
class MoveResult:
    """What a promote/rollback/step did."""

    model: str
    ref: str
    ok: bool
    old: RefValue | None
    new: RefValue | None
    entries: list[ReflogEntry] = field(default_factory=list)
    message: str = ""
    reverted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "ref": self.ref,
            "ok": self.ok,
            "reverted": self.reverted,
            "old": None if self.old is None else self.old.model_dump(mode="json"),
            "new": None if self.new is None else self.new.model_dump(mode="json"),
            "old_version": None if self.old is None else self.old.describe(),
            "new_version": None if self.new is None else self.new.describe(),
            "message": self.message,
            "reflog": [e.model_dump(mode="json") for e in self.entries],
        }


class Rollout:
    """Moves the refs of one store: every promote, rollback and split step goes through
    :meth:`move`, which writes the ref by compare-and-swap and then fires the hooks."""

    def __init__(self, ctx: StoreContext, hooks: Hooks | None = None) -> None:
        self.ctx = ctx
        self.hooks = hooks if hooks is not None else Hooks()

    @property
    def refs(self) -> RefStore:
        return self.ctx.refs

    # -- the single place refs move ------------------------------------------------------
    def move(
        self,
        model: str,
        ref: str,
        new: RefValue | None,
        *,
        expected_seq: Any,
        reason: str,
        trigger: Trigger,
        op: str,
        actor: str | None = None,
    ) -> ReflogEntry:
        entry = self.refs.move(
            model,
            ref,
            new,
            expected_seq=expected_seq,
            reason=reason,
            trigger=trigger,
            op=op,
            actor=actor,
        )
        self.hooks.notify({"event": "ref-moved", **entry.model_dump(mode="json")})
        return entry

    def verify_version(self, version: Version, *, read_data: bool = False) -> list[str]:
        """Problems that would make ``version`` unreadable (empty list: complete)."""
        store = self.ctx.store
        try:  # still indexed, with the same manifest (a GC may have expired it meanwhile)
            indexed = json.loads(store.get(version_key(version.model, version.version)))
            if indexed.get("manifest") != version.id.hex():
                return [f"{version.name} was replaced"]
        except NotFoundError:
            return [f"{version.name} no longer exists"]
        digests = version.manifest.chunk_set()
        keys = {chunk_key(d): d for d in digests}
        keys_to_check = [*keys, manifest_key(version.id)]
        present = store.exists_many(keys_to_check)
        problems = [f"chunk {keys[k].short()} missing" for k in sorted(set(keys) - present)]
        if manifest_key(version.id) not in present:
            problems.append(f"manifest of {version.name} missing")
        if read_data and not problems:
            for d in sorted(digests):
                try:
                    self.ctx.chunks.read(d)
                except Exception as e:
                    problems.append(str(e))
        return problems

    # -- operations ----------------------------------------------------------------------
    def set_ref(
        self,
        model: str,
        ref: str,
        spec: str,
        *,
        reason: str = "",
        trigger: Trigger = "user",
        op: str = "promote",
        verify_data: bool = False,
        health_check: HealthCheck | None = None,
        actor: str | None = None,
    ) -> MoveResult:
        """Point ``ref`` at a version: verify, switch atomically, health-check, maybe revert."""
        target = self.ctx.get_version(model, spec)
        rec, _ = self.refs.read(model, ref)
        seq = None if rec is None else rec.seq
        old = None if rec is None else rec.value
        return self._switch(
            model,
            ref,
            old,
            seq,
            RefValue.of(target.target),
            target,
            reason=reason,
            trigger=trigger,
            op=op,
            verify_data=verify_data,
            health_check=health_check,
            actor=actor,
        )

    def _switch(
        self,
        model: str,
        ref: str,
        old: RefValue | None,
        seq: int | None,
        new: RefValue,
        check_version: Version,
        *,
        reason: str,
        trigger: Trigger,
        op: str,
        verify_data: bool,
        health_check: HealthCheck | None,
        actor: str | None,
    ) -> MoveResult:
        with self.ctx.writing("ref"):
            problems = self.verify_version(check_version, read_data=verify_data)
            if problems:
                return MoveResult(
                    model,
                    ref,
                    False,
                    old,
                    old,
                    [],
                    f"refused: {check_version.name} is incomplete: " + "; ".join(problems[:5]),
                )
            entry = self.move(
                model,
                ref,
                new,
                expected_seq=seq,
                reason=reason,
                trigger=trigger,
                op=op,
                actor=actor,
            )
            res = MoveResult(
                model,
                ref,
                True,
                old,
                new,
                [entry],
                f"{ref}: {old.describe() if old else '(none)'} -> {new.describe()}",
            )
            if health_check is None:
                return res
            ok, msg = self.hooks.health_check(health_check, check_version, ref)
            if ok:
                res.message += f"; {msg}"
                return res
            back = self.move(
                model,
                ref,
                old,
                expected_seq=entry.seq,
                reason=f"auto-revert: {msg}",
                trigger="health-check",
                op="revert",
                actor=actor,
            )
            res.entries.append(back)
            res.ok, res.reverted, res.new = False, True, old
            res.message = f"rolled back to {old.describe() if old else '(none)'}: {msg}"
            return res

    def promote(self, model: str, spec: str, *, ref: str = "current", **kw: Any) -> MoveResult:
        """Point ``ref`` at a version going forward (same operation as a targeted rollback)."""
        kw.setdefault("op", "promote")
        return self.set_ref(model, ref, spec, **kw)

    def previous_stable(self, model: str, ref: str = "current") -> Version:
        """The newest version before the one ``ref`` points at that is a release or `stable`."""
        value = self.refs.get(model, ref)
        cur = value.target if value.target is not None else value.split.candidate  # type: ignore[union-attr]
        older = [
            v for v in self.ctx.versions(model) if semver_key(v.version) < semver_key(cur.version)
        ]
        for v in reversed(older):
            if v.version_type == "release" or "stable" in v.tags:
                return v
        raise NotFoundError(f"no release or stable version of {model} before {cur.version}")

    def rollback(
        self,
        model: str,
        *,
        to: str | None = None,
        ref: str = "current",
        reason: str = "",
        trigger: Trigger = "rollback",
        **kw: Any,
    ) -> MoveResult:
        """Quick rollback (``to=None``: previous stable) or targeted rollback (``to=VERSION``)."""
        spec = to if to is not None else self.previous_stable(model, ref).version
        return self.set_ref(model, ref, spec, reason=reason, trigger=trigger, op="rollback", **kw)

    # -- progressive rollout / rollback --------------------------------------------------
    def start_split(
        self,
        model: str,
        spec: str,
        *,
        ref: str = "current",
        steps: Sequence[float] = DEFAULT_STEPS,
        reason: str = "",
        op: str = "rollout",
        verify_data: bool = False,
        actor: str | None = None,
    ) -> MoveResult:
        """Begin sending ``steps[0]`` of the traffic on ``ref`` to a version."""
        steps = _check_steps(steps)
        rec, _ = self.refs.read(model, ref)
        if rec is None or rec.value is None or rec.value.target is None:
            raise InvalidInputError(f"{model}@{ref} must point at one version to start a split")
        cand = self.ctx.get_version(model, spec)
        if cand.version == rec.value.target.version:
            raise InvalidInputError(f"{model}@{ref} already points at {cand.version}")
        new = RefValue(
            split=Split(base=rec.value.target, candidate=cand.target, weight=steps[0], steps=steps)
        )
        if steps[0] >= 1.0:
            new = RefValue.of(cand.target)
        return self._switch(
            model,
            ref,
            rec.value,
            rec.seq,
            new,
            cand,
            reason=reason,
            trigger="progressive-step",
            op=op,
            verify_data=verify_data,
            health_check=None,
            actor=actor,
        )

    def advance(
        self,
        model: str,
        *,
        ref: str = "current",
        weight: float | None = None,
        reason: str = "",
        actor: str | None = None,
    ) -> MoveResult:
        """Move a split to its next step (or to ``weight``); at 100% the ref becomes plain."""
        with self.ctx.writing("ref"):
            rec, _ = self.refs.read(model, ref)
            if rec is None or rec.value is None or rec.value.split is None:
                raise InvalidInputError(f"{model}@{ref} is not in a progressive split")
            s = rec.value.split
            if weight is None:
                later = [w for w in s.steps if w > s.weight]
                weight = later[0] if later else 1.0
            if not s.weight < weight <= 1.0:
                raise InvalidInputError(f"next weight must be in ({s.weight}, 1], got {weight}")
            new = (
                RefValue.of(s.candidate)
                if weight >= 1.0
                else RefValue(split=s.model_copy(update={"weight": weight}))
            )
            entry = self.move(
                model,
                ref,
                new,
                expected_seq=rec.seq,
                reason=reason,
                trigger="progressive-step",
                op="advance",
                actor=actor,
            )
            return MoveResult(
                model,
                ref,
                True,
                rec.value,
                new,
                [entry],
                f"{ref}: {rec.value.describe()} -> {new.describe()}",
            )

    def abort(
        self,
        model: str,
        *,
        ref: str = "current",
        reason: str = "",
        trigger: Trigger = "user",
        actor: str | None = None,
    ) -> MoveResult:
        """Stop a split: all traffic back to its base version."""
        with self.ctx.writing("ref"):
            rec, _ = self.refs.read(model, ref)
            if rec is None or rec.value is None or rec.value.split is None:
                raise InvalidInputError(f"{model}@{ref} is not in a progressive split")
            new = RefValue.of(rec.value.split.base)
            entry = self.move(
                model,
                ref,
                new,
                expected_seq=rec.seq,
                reason=reason,
                trigger=trigger,
                op="abort",
                actor=actor,
            )
            return MoveResult(
                model,
                ref,
                True,
                rec.value,
                new,
                [entry],
                f"{ref}: {rec.value.describe()} -> {new.describe()}",
            )

    def resolve(self, model: str, ref: str = "current", request_key: str | None = None) -> Target:
        """Which version ``ref`` sends ``request_key`` to (sticky within a split)."""
        return self.refs.resolve(model, ref, request_key)


def _check_steps(steps: Sequence[float]) -> tuple[float, ...]:
    s = tuple(float(x) for x in steps)
    if not s or any(not 0 < x <= 1 for x in s) or list(s) != sorted(set(s)):
        raise InvalidInputError(f"steps must be increasing fractions in (0, 1], got {list(steps)}")
    return s
