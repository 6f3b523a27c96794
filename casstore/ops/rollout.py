"""Ref operations: promote, rollback (quick, targeted, progressive), health checks, triggers.

The seed's rollback flow: the old pointer is kept in the reflog (no data is copied); the target
is verified before the switch; the switch is one compare-and-swap; a health check runs after
it and, on failure, the ref is switched back automatically; every move is logged and fires the
notification hooks (Python callables and a shell command that reads a JSON event on stdin).
Every move first passes the store's trust policy (:class:`~casstore.ops.trust.TrustGate`): a
ref whose policy requires signatures never points at a version without them, whichever
operation (promote, any rollback, split steps, abort, auto-revert, watch) asks for the move.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from casstore.errors import (
    ConflictError,
    CorruptObjectError,
    InvalidInputError,
    NotFoundError,
    UntrustedError,
)
from casstore.ops.hooks import HealthCheck, Hooks
from casstore.ops.rules import DEFAULT_STEPS, REJECTING_OPS, REJECTING_TRIGGERS
from casstore.repo.catalog import Version, parse_index_entry
from casstore.repo.context import StoreContext
from casstore.repo.keys import check_keyid, chunk_key, manifest_key, version_key
from casstore.repo.refs import ReflogEntry, RefStore, RefValue, Split, Target, Trigger
from casstore.repo.versioning import parse_spec
from casstore.store.base import together

if TYPE_CHECKING:
    from casstore.ops.trust import TrustGate


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
    notify_failures: list[str] = field(default_factory=list)  # the move stands regardless

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "ref": self.ref,
            "ok": self.ok,
            "reverted": self.reverted,
            "old": None if self.old is None else self.old.to_builtins(),
            "new": None if self.new is None else self.new.to_builtins(),
            "old_version": None if self.old is None else self.old.describe(),
            "new_version": None if self.new is None else self.new.describe(),
            "message": self.message,
            "reflog": [e.to_builtins() for e in self.entries],
            "notify_failures": list(self.notify_failures),
        }


class Rollout:
    """Moves the refs of one store: every promote, rollback and split step goes through
    :meth:`move`, which checks the trust policy, writes the ref by compare-and-swap and then
    fires the hooks."""

    def __init__(
        self,
        ctx: StoreContext,
        hooks: Hooks | None = None,
        trust: TrustGate | None = None,
        *,
        anchors: Sequence[str] = (),
    ) -> None:
        self.ctx = ctx
        self.hooks = hooks if hooks is not None else Hooks()
        self._trust = trust
        self._anchors = tuple(check_keyid(a) for a in anchors)

    @property
    def trust(self) -> TrustGate:
        """The trust gate every move passes (``anchors`` pin its first policy), made on first
        use: commands that only read refs never load the trust and signing code."""
        if self._trust is None:
            from casstore.ops.trust import TrustGate

            self._trust = TrustGate(self.ctx, self._anchors)
        return self._trust

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
        evidence: dict[str, Any] | None = None,
        notify_failures: list[str] | None = None,
    ) -> ReflogEntry:
        """Check the trust policy, move the ref by compare-and-swap, then tell the hooks; what
        failed among them is appended to ``notify_failures`` (the move stands either way).
        UntrustedError if the trust policy refuses one of the versions of ``new`` (None
        deletes the ref), ConflictError if ``expected_seq`` is stale."""
        def trusted() -> None:
            if new is not None:
                self.trust.require(model, ref, [(t.version, t.manifest) for t in new.versions()])

        entry = self.refs.move(
            model,
            ref,
            new,
            expected_seq=expected_seq,
            reason=reason,
            trigger=trigger,
            op=op,
            actor=actor,
            evidence=evidence,
            check=trusted,
        )
        failed = self.hooks.notify({"event": "ref-moved", **entry.to_builtins()})
        if notify_failures is not None:
            notify_failures.extend(failed)
        return entry

    def check_version(
        self, version: Version, *, chunks: bool = False, read_data: bool = False
    ) -> list[str]:
        """Problems that would make ``version`` unreadable (empty list: complete).

        Without ``chunks``: one request, whatever the model's size: the version is still
        indexed with the same manifest. That suffices because a commit indexes a version only
        after all its chunks are stored, and GC sweeps the chunks of a version only after
        marking it expired; a ref move reads that marker after writing the ref and moves
        back if it finds one (see :meth:`casstore.repo.refs.RefStore.move`).
        ``chunks`` also asks whether every chunk exists; ``read_data`` re-hashes them."""
        store = self.ctx.store
        key = version_key(version.model, version.version)
        try:  # still indexed, with the same manifest (a GC may have expired it meanwhile)
            if parse_index_entry(key, store.get(key)) != version.id:
                return [f"{version.name} was replaced"]
        except NotFoundError:
            return [f"{version.name} no longer exists"]
        except (ValueError, CorruptObjectError):
            return [f"the index entry of {version.name} is unreadable"]
        if not (chunks or read_data):
            return []
        return self._check_chunks(version, read_data)

    def verify_version(self, version: Version, *, read_data: bool = False) -> list[str]:
        """The per-chunk check: every chunk exists (and, with ``read_data``, hashes right)."""
        return self.check_version(version, chunks=True, read_data=read_data)

    def _check_chunks(self, version: Version, read_data: bool) -> list[str]:
        store = self.ctx.store
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
        expected_seq: int | str | None = "read",
        evidence: dict[str, Any] | None = None,
        revert: bool = True,
        pre_check: HealthCheck | None = None,
        verify: bool = False,
    ) -> MoveResult:
        """Point ``ref`` at a version: check, pre-check, switch atomically, health-check,
        maybe revert. The check is O(1) requests (see :meth:`check_version`); ``verify``
        asks about every chunk, ``verify_data`` re-hashes them.

        ``expected_seq``: the ref move the caller decided on (ConflictError if the ref moved
        since); by default whatever this call reads. ``revert=False`` leaves a version that
        failed its health check in place (the caller decides what comes next)."""
        # the version and the ref are asked for together (one round trip on a remote store)
        target, (rec, _) = together(self.ctx.store, lambda: self.ctx.get_version(model, spec),
                                    lambda: self.refs.read(model, ref))
        seq = None if rec is None else rec.seq
        if expected_seq != "read" and expected_seq != seq:
            raise ConflictError(f"ref {model}@{ref} moved (now at #{seq}); re-read and retry")
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
            evidence=evidence,
            revert=revert,
            pre_check=pre_check,
            verify=verify,
            indexed=parse_spec(model, spec).semver is not None,
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
        evidence: dict[str, Any] | None = None,
        revert: bool = True,
        pre_check: HealthCheck | None = None,
        verify: bool = False,
        indexed: bool = False,
    ) -> MoveResult:
        """Verify the target, run the pre-check, move the ref, run the health check (its
        failure moves the ref back). A refused move leaves the ref untouched.

        ``indexed``: the caller read the target's index entry a moment ago, which is all
        :meth:`check_version` asks without ``verify``; it is not asked again (a GC that
        expires the version meanwhile is caught by the ref move, which reads GC's marker)."""
        def refused(why: str) -> MoveResult:
            return MoveResult(model, ref, False, old, old, [], f"refused: {why}")

        problems = [] if indexed and not (verify or verify_data) else self.check_version(
            check_version, chunks=verify, read_data=verify_data)
        if problems:
            return refused(f"{check_version.name} is incomplete: " + "; ".join(problems[:5]))
        if pre_check is not None:
            ok, msg = self.hooks.health_check(
                pre_check, check_version, ref, store=self.ctx.store.url, stage="pre-check"
            )
            if not ok:
                return refused(f"{msg}; {model}@{ref} not moved")
        try:
            res = self._move_result(model, ref, old, new, seq, reason=reason, trigger=trigger,
                                    op=op, actor=actor, evidence=evidence)
        except UntrustedError as e:
            return refused(str(e).removeprefix("refused: "))
        entry = res.entries[0]
        if pre_check is not None:
            res.message += "; pre-check passed"
        if health_check is None:
            return res
        ok, msg = self.hooks.health_check(
            health_check, check_version, ref, store=self.ctx.store.url
        )
        if ok:
            res.message += f"; {msg}"
            return res
        if not revert:
            res.ok, res.message = False, f"{res.message}; {msg}"
            return res
        try:
            back = self.move(
                model,
                ref,
                old,
                expected_seq=entry.seq,
                reason=f"auto-revert: {msg}",
                trigger="health-check",
                op="revert",
                actor=actor,
                notify_failures=res.notify_failures,
            )
        except UntrustedError as e:
            res.ok = False
            res.message = f"health check failed ({msg}); the revert was {e}"
            return res
        res.entries.append(back)
        res.ok, res.reverted, res.new = False, True, old
        res.message = f"rolled back to {old.describe() if old else '(none)'}: {msg}"
        return res

    def promote(self, model: str, spec: str, *, ref: str = "current", **kw: Any) -> MoveResult:
        """Point ``ref`` at a version going forward (same operation as a targeted rollback)."""
        kw.setdefault("op", "promote")
        return self.set_ref(model, ref, spec, **kw)

    def previous_stable(
        self, model: str, ref: str = "current", *, skip: Collection[str] = ()
    ) -> Version:
        """The version a quick rollback of ``ref`` goes to: the one place this choice is made.

        Walks the ref's own reflog newest first (see :data:`.rules.PREVIOUS_STABLE_RULE`) and
        returns the most recent version the ref served, other than the one it serves now, that
        qualifies: a release or tagged ``stable``, not tagged ``deprecated``, still stored with
        the same manifest, and not left by a rollback, revert, undo, abort or failed check.
        NotFoundError (with what was passed over) if none does. Costs the reflog entries
        walked plus about three small reads per candidate, not the length of history.
        ``skip``: versions already tried (e.g. refused as incomplete) are passed over too.
        """
        entries = self.refs.history(model, ref)
        newest = next(entries, None)
        if newest is None or newest.new is None:
            raise NotFoundError(f"model {model!r} has no ref {ref!r}")
        now = newest.new
        current = {now.target.version} if now.target else {now.split.candidate.version}  # type: ignore[union-attr]
        passed: list[str] = []
        departure = newest  # the move that ended what the next (older) entry put on the ref
        seen: set[str] = set()
        for e in entries:
            served, left_by, departure = e.new, departure, e
            if served is None or served.target is None:
                continue  # deleted or a transitional split: not a version the ref served alone
            t = served.target
            if t.version in current or t.version in seen:
                continue
            if t.version in skip:
                seen.add(t.version)
                passed.append(f"{t.version} (tried)")
                continue
            seen.add(t.version)
            version, why = self._judge(model, t, left_by)
            if version is not None:
                return version
            passed.append(f"{t.version} ({why})")
        raise NotFoundError(
            f"{model}@{ref} served no stable version before {now.describe()}"
            + (f"; passed over {', '.join(passed)}" if passed else "")
            + "; name one with --to VERSION"
        )

    def _judge(
        self, model: str, t: Target, left_by: ReflogEntry
    ) -> tuple[Version | None, str]:
        """A version the ref served, if it qualifies as its previous stable, else why not."""
        if left_by.op in REJECTING_OPS or left_by.trigger in REJECTING_TRIGGERS:
            return None, f"left by {left_by.op} #{left_by.seq}"
        try:
            v = self.ctx.get_version(model, t.version)
        except NotFoundError:
            return None, "no longer stored"
        if v.id.hex() != t.manifest:
            return None, "replaced since"
        if "deprecated" in v.tags:
            return None, "deprecated"
        if v.version_type != "release" and "stable" not in v.tags:
            return None, f"a {v.version_type}, not tagged stable"
        return v, "qualifies"

    def undo(
        self,
        model: str,
        *,
        ref: str = "current",
        reason: str = "",
        verify_data: bool = False,
        health_check: HealthCheck | None = None,
        actor: str | None = None,
        pre_check: HealthCheck | None = None,
        verify: bool = False,
    ) -> MoveResult:
        """Revert the ref's last move: point it where it pointed before (a plain version or a
        split), after checking that is still complete (O(1); ``verify``: every chunk). The
        undo is itself a move (op ``undo``), so undoing twice redoes."""
        rec, _ = self.refs.read(model, ref)
        if rec is None or rec.value is None:
            raise NotFoundError(f"model {model!r} has no ref {ref!r}")
        back = rec.entry.old
        if back is None:
            raise InvalidInputError(
                f"nothing to undo: the last move of {model}@{ref} (#{rec.seq}) created it"
            )
        targets = back.versions()
        versions = [self.ctx.get_version(model, t.version) for t in targets]
        for t, v in zip(targets, versions):
            if v.id.hex() != t.manifest:
                raise NotFoundError(f"{model} {t.version} was replaced since; cannot undo")
        for v in versions[:-1]:  # the base of a split; _switch checks the other
            problems = self.check_version(v, chunks=verify, read_data=verify_data)
            if problems:
                return MoveResult(model, ref, False, rec.value, rec.value, [],
                                  f"refused: {v.name} is incomplete: " + "; ".join(problems[:5]))
        return self._switch(
            model,
            ref,
            rec.value,
            rec.seq,
            back,
            versions[-1],
            reason=reason or f"undo #{rec.seq} ({rec.entry.op})",
            trigger="rollback",
            op="undo",
            verify_data=verify_data,
            health_check=health_check,
            actor=actor,
            pre_check=pre_check,
            verify=verify,
        )

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
        pre_check: HealthCheck | None = None,
        verify: bool = False,
    ) -> MoveResult:
        """Begin sending ``steps[0]`` of the traffic on ``ref`` to a version."""
        steps = _check_steps(steps)
        rec, _ = self.refs.read(model, ref)
        if rec is None or rec.value is None or rec.value.target is None:
            raise InvalidInputError(f"{model}@{ref} must point at one version to start a split")
        cand = self.ctx.get_version(model, spec)
        if cand.version == rec.value.target.version:
            raise InvalidInputError(f"{model}@{ref} already points at {cand.version}")
        new = (
            RefValue.of(cand.target) if steps[0] >= 1.0
            else RefValue(split=Split(base=rec.value.target, candidate=cand.target,
                                      weight=steps[0], steps=tuple(steps)))
        )
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
            pre_check=pre_check,
            verify=verify,
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
            else RefValue(split=s.replace(weight=weight))
        )
        return self._move_result(model, ref, rec.value, new, rec.seq, reason=reason,
                                 trigger="progressive-step", op="advance", actor=actor)

    def abort(
        self,
        model: str,
        *,
        ref: str = "current",
        reason: str = "",
        trigger: Trigger = "user",
        actor: str | None = None,
        expected_seq: int | str | None = "read",
        evidence: dict[str, Any] | None = None,
    ) -> MoveResult:
        """Stop a split: all traffic back to its base version."""
        rec, _ = self.refs.read(model, ref)
        if rec is None or rec.value is None or rec.value.split is None:
            raise InvalidInputError(f"{model}@{ref} is not in a progressive split")
        if expected_seq != "read" and expected_seq != rec.seq:
            raise ConflictError(f"ref {model}@{ref} moved (now at #{rec.seq})")
        new = RefValue.of(rec.value.split.base)
        return self._move_result(model, ref, rec.value, new, rec.seq, reason=reason,
                                 trigger=trigger, op="abort", actor=actor, evidence=evidence)

    def _move_result(
        self, model: str, ref: str, old: RefValue | None, new: RefValue, seq: int | None,
        **how: Any,
    ) -> MoveResult:
        """Move ``ref`` from ``old`` (at ``seq``) to ``new`` (``how``: reason, trigger, op,
        actor, evidence, as :meth:`move` takes them); the result and its one-line message."""
        failures: list[str] = []
        entry = self.move(model, ref, new, expected_seq=seq, notify_failures=failures, **how)
        return MoveResult(
            model, ref, True, old, new, [entry],
            f"{ref}: {old.describe() if old else '(none)'} -> {new.describe()}",
            notify_failures=failures,
        )

    def resolve(self, model: str, ref: str = "current", request_key: str | None = None) -> Target:
        """Which version ``ref`` sends ``request_key`` to (sticky within a split)."""
        return self.refs.resolve(model, ref, request_key)


def _check_steps(steps: Sequence[float]) -> tuple[float, ...]:
    s = tuple(float(x) for x in steps)
    if not s or any(not 0 < x <= 1 for x in s) or list(s) != sorted(set(s)):
        raise InvalidInputError(f"steps must be increasing fractions in (0, 1], got {list(steps)}")
    return s
