"""Automatic rollback: judge what a ref serves by its live figures and roll back on a violation.

One :meth:`Watcher.check` reads the ref. The version it serves (the candidate of a split) is
judged under a :class:`~casstore.ops.regression.WatchPolicy` against its baseline (the base of
a split, else the version the ref served before): limits (``error_rate`` at most 0.05) and
drops relative to the baseline's figures, observed in the same window if it has enough
requests there, else recorded (the figures a watcher saved while it served without
violation, then the metrics in its manifest). A version with fewer than ``min_requests``
requests in the window gets no verdict.

A violation opens an incident keyed by the ref move that put the version there
(``model@ref#seq``), kept in the store so that watchers on several machines, and ``--once``
runs from cron, share it. It must last ``sustain`` seconds (a clean check in between closes
it); then one watcher claims it by compare-and-swap on the incident object (the others report
who holds it) and acts: it aborts a split, or quick-rolls-back to the previous stable version
(:meth:`Rollout.previous_stable`), trigger ``auto``, with the evidence in the reflog entry and
in the notification. A target failing its health check makes it try the next older stable
version, up to ``max_attempts``; if none passes, the ref is restored to the version it served
at the incident. Every move expects the ref move the watcher saw before it (compare-and-swap on
the ref): if anyone else moves the ref meanwhile, the watcher stops instead of stacking moves.
A watcher's own moves stay their incident: it acts once per incident, never cascading down
the history on its own. A check costs two small reads (ref, incident), whatever the history.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from casstore._own_env import for_children
from casstore.errors import CasstoreError, ConflictError, NotFoundError
from casstore.ops.hooks import HealthCheck
from casstore.ops.regression import WatchPolicy
from casstore.ops.rollout import Rollout
from casstore.repo.keys import healthy_figures_key, incident_key
from casstore.repo.refs import RefRecord

Figures = Mapping[str, Mapping[str, float]]
"""version -> metric -> value (what followers or a metrics command observed)."""

ACTED = frozenset({"rolled-back", "aborted", "would-roll-back", "would-abort"})
FAILED = frozenset({"restored", "no-candidate", "interrupted", "unresolved"})


class MetricsUnavailable(CasstoreError):
    """The metrics command failed or printed something that is not figures."""


@dataclass
class WatchReport:
    """What one check saw and did. ``state``: ok | no-traffic | insufficient | violating
    (waiting for the violation to last) | rolled-back | aborted | restored | no-candidate |
    interrupted | handled-elsewhere | unresolved (acted on, still violating) |
    would-roll-back | would-abort."""

    model: str
    ref: str
    state: str
    seq: int | None = None
    version: str | None = None
    baseline: str | None = None
    violations: list[str] = field(default_factory=list)
    figures: dict[str, dict[str, float]] = field(default_factory=dict)
    message: str = ""
    incident: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    final: str | None = None  # what the ref serves after acting

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Judged:
    version: str
    baseline: str | None
    baseline_source: str
    figures: dict[str, dict[str, float]]
    violations: list[str]
    state: str  # ok | no-traffic | insufficient | violating


class Watcher:
    """Watches ``model@ref`` under ``policy``; ``check(observed)`` once per interval."""

    def __init__(
        self,
        rollout: Rollout,
        model: str,
        policy: WatchPolicy,
        *,
        ref: str = "current",
        health_check: HealthCheck | None = None,
        watcher_id: str | None = None,
        dry_run: bool = False,
        lease_seconds: float | None = None,
    ) -> None:
        self.rollout, self.model, self.ref, self.policy = rollout, model, ref, policy
        self.store = rollout.ctx.store
        self.health_check = health_check
        self.id = watcher_id or f"{rollout.refs.actor}-{uuid.uuid4().hex[:6]}"
        self.dry_run = dry_run
        # a claimed incident whose watcher vanished is taken over after this long
        self.lease = lease_seconds or rollout.hooks.health_timeout * policy.max_attempts + 60
        self._healthy_saved: dict[str, float] = {}

    # -- judging -------------------------------------------------------------------------
    def judge(
        self, rec: RefRecord, observed: Figures, extra: Mapping[str, float] | None = None
    ) -> _Judged:
        """The verdict on what ``rec`` serves, from ``observed`` figures (and ``extra``, flat
        figures of the judged version, e.g. from a metrics command, which win)."""
        value = rec.value
        assert value is not None
        if value.split is not None:
            cand, base = value.split.candidate.version, value.split.base.version
        else:
            cand = value.target.version  # type: ignore[union-attr]
            old = rec.entry.old
            base = None if old is None else (old.target or old.split.base).version  # type: ignore[union-attr]
            base = None if base == cand else base
        figs = {**observed.get(cand, {}), **(extra or {})}
        n = figs.get("requests")
        if not figs or (n is not None and n < self.policy.min_requests):
            shown = {cand: figs} | ({base: dict(observed[base])} if base in observed else {})
            state = "insufficient" if figs else "no-traffic"
            return _Judged(cand, base, "unread", shown, [], state)
        base_figs, source = self._baseline(base, observed)  # only read when a verdict is due
        shown = {cand: figs} | ({base: base_figs} if base is not None else {})
        violations = self.policy.violations(figs, base_figs)
        return _Judged(cand, base, source, shown, violations, "violating" if violations else "ok")

    def _baseline(self, base: str | None, observed: Figures) -> tuple[dict[str, float], str]:
        if base is None:
            return {}, "none"
        seen = dict(observed.get(base, {}))
        if seen.get("requests", 0) >= max(1, self.policy.min_requests):
            return seen, "observed"
        try:
            return json.loads(self.store.get(healthy_figures_key(self.model, self.ref, base))), (
                "recorded"
            )
        except (NotFoundError, ValueError):
            pass
        try:
            return dict(self.rollout.ctx.get_version(self.model, base).metrics), "manifest"
        except NotFoundError:
            return {}, "none"

    @staticmethod
    def fresh_since(rec: RefRecord) -> dict[str, float]:
        """version -> the time from which its figures count: a version the ref's last move
        brought in counts from that move (not from the last time it served), others over the
        whole window."""
        new = rec.entry.new
        if new is None:
            return {}
        before = {t.version for t in rec.entry.old.versions()} if rec.entry.old else set()
        moved = rec.entry.time.timestamp()
        return {t.version: moved for t in new.versions() if t.version not in before}

    # -- one check -----------------------------------------------------------------------
    def check(
        self,
        observed: Figures | Callable[[dict[str, float]], Figures],
        extra: Mapping[str, float] | None = None,
    ) -> WatchReport:
        """Judge the ref once and act if the policy says so (see the module docstring).

        ``observed``: per-version figures, or a function that makes them given
        :meth:`fresh_since` of the ref as this check reads it (followers' slices are counted
        that way); ``extra``: flat figures of the judged version (they win)."""
        rec, _ = self.rollout.refs.read(self.model, self.ref)
        if rec is None or rec.value is None:
            raise NotFoundError(f"model {self.model!r} has no ref {self.ref!r}")
        if callable(observed):
            observed = observed(self.fresh_since(rec))
        j = self.judge(rec, observed, extra)
        seq = _incident_seq(rec)
        rep = WatchReport(self.model, self.ref, j.state, rec.seq, j.version, j.baseline,
                          j.violations, j.figures, incident=f"{self.model}@{self.ref}#{seq}")
        if j.state == "ok":
            self._close(seq)
            self._save_healthy(j)
            rep.message = f"{j.version} within policy"
        elif j.state != "violating":
            n = j.figures[j.version].get("requests", 0)
            rep.message = (f"{j.version}: {n:g} request(s) in the window, policy needs "
                           f"{self.policy.min_requests}: no verdict")
        else:
            self._on_violation(rec, seq, j, rep)
        return rep

    def _on_violation(self, rec: RefRecord, seq: int, j: _Judged, rep: WatchReport) -> None:
        now = time.time()
        key = incident_key(self.model, self.ref, seq)
        doc, token = self._read_incident(key)
        if doc is None or doc["state"] == "closed":
            doc = {"incident": rep.incident, "version": j.version, "state": "open",
                   "first_seen": now, "owner": None}
            if not self.dry_run:
                token = self._cas_incident(key, doc, token)
                if token is None:  # another watcher opened it: go by theirs
                    doc, token = self._read_incident(key)
                    assert doc is not None
        if doc["state"] == "done" and self._moved_since(rec):
            # judged what the ref served before another watcher handled this incident: the
            # next check judges what the ref serves now
            rep.state = "handled-elsewhere"
            rep.message = f"incident {rep.incident} was handled by {doc['owner']} meanwhile"
            return
        if doc["state"] == "done":  # and still violating: acting again would cascade
            rep.state = "unresolved"
            rep.message = (
                f"incident {rep.incident} was handled by {doc['owner']} ({doc.get('result')}, "
                f"now {j.version}), and the policy is still violated: watch acts once per "
                "incident; name a version with casstore rollback --to, or fix and promote")
            return
        if doc["state"] == "acting" and now - doc["claimed_at"] < self.lease:
            rep.state = "handled-elsewhere"
            rep.message = f"incident {rep.incident} is being handled by {doc['owner']}"
            return
        # another watcher may have opened it after ``now`` (or on a host whose clock runs
        # ahead): an incident never lasted less than nothing
        lasted = max(0.0, now - doc["first_seen"])
        if lasted < self.policy.sustain:
            rep.message = (f"{j.version} violates the policy for {lasted:.1f}s of the "
                           f"{self.policy.sustain:g}s it must last: " + "; ".join(j.violations))
            return
        if self.dry_run:
            self._dry_run(rec, rep)
            return
        claim = {**doc, "state": "acting", "owner": self.id, "claimed_at": now}
        token = self._cas_incident(key, claim, token)
        if token is None:
            other, _ = self._read_incident(key)
            rep.state = "handled-elsewhere"
            rep.message = f"incident {rep.incident} claimed by {other and other['owner']}"
            return
        evidence = {
            "incident": rep.incident, "watcher": self.id, "version": j.version,
            "baseline": j.baseline, "baseline_source": j.baseline_source,
            "violations": j.violations, "figures": j.figures,
            "window_seconds": self.policy.window, "min_requests": self.policy.min_requests,
            "sustained_seconds": round(lasted, 3), "incident_seq": seq,
        }
        self._act(rec, evidence, rep)
        self._cas_incident(key, {**claim, "state": "done", "result": rep.state,
                                 "final": rep.final, "attempts": rep.attempts}, token)
        self.rollout.hooks.notify({"event": "watch-incident", **rep.to_dict()})

    def _moved_since(self, rec: RefRecord) -> bool:
        now, _ = self.rollout.refs.read(self.model, self.ref)
        return now is not None and now.seq != rec.seq

    # -- acting --------------------------------------------------------------------------
    def _act(self, rec: RefRecord, evidence: dict[str, Any], rep: WatchReport) -> None:
        value = rec.value
        assert value is not None
        why = "auto: " + "; ".join(evidence["violations"])
        if value.split is not None:
            try:
                res = self.rollout.abort(self.model, ref=self.ref, reason=why, trigger="auto",
                                         expected_seq=rec.seq, evidence=evidence)
            except ConflictError as e:
                rep.state, rep.message = "interrupted", f"the ref moved meanwhile: {e}"
                return
            rep.state, rep.final, rep.message = "aborted", res.new.describe(), res.message  # type: ignore[union-attr]
            return
        expected, tried, moved = rec.seq, [], False
        for attempt in range(1, self.policy.max_attempts + 1):
            try:
                target = self.rollout.previous_stable(self.model, self.ref, skip=tried)
            except NotFoundError as e:
                rep.message = str(e)
                break
            tried.append(target.version)
            try:
                res = self.rollout.set_ref(
                    self.model, self.ref, target.version, reason=why, trigger="auto",
                    op="rollback", health_check=self.health_check, expected_seq=expected,
                    evidence={**evidence, "attempt": attempt}, revert=False,
                )
            except ConflictError as e:
                rep.state, rep.message = "interrupted", f"the ref moved meanwhile: {e}"
                return
            rep.attempts.append({"version": target.version, "ok": res.ok,
                                 "message": res.message, "seq": [e.seq for e in res.entries]})
            if res.entries:
                expected, moved = res.entries[-1].seq, True
            if res.ok:
                rep.state, rep.final = "rolled-back", target.version
                rep.message = f"rolled back {evidence['version']} -> {target.version}: " + why
                return
        if not moved:
            rep.state = "no-candidate"
            rep.message = "no rollback target passed: " + (rep.message or "none tried")
            return
        self._restore(rec, expected, evidence, rep)

    def _restore(self, rec: RefRecord, expected: int, evidence: dict[str, Any],
                 rep: WatchReport) -> None:
        tried = ", ".join(a["version"] for a in rep.attempts)
        why = f"auto: no rollback target passed its health check ({tried}); restored"
        try:
            # no write session: a ref move never waits for GC (see casstore.repo.leases)
            self.rollout.move(self.model, self.ref, rec.value, expected_seq=expected,
                              reason=why, trigger="auto", op="revert",
                              evidence={**evidence, "restore": True})
        except ConflictError as e:
            rep.state, rep.message = "interrupted", f"the ref moved meanwhile: {e}"
            return
        rep.state, rep.final = "restored", rec.value.describe()  # type: ignore[union-attr]
        rep.message = f"{why} {rep.final}, which served at the incident"

    def _dry_run(self, rec: RefRecord, rep: WatchReport) -> None:
        if rec.value is not None and rec.value.split is not None:
            rep.state, rep.final = "would-abort", rec.value.split.base.version
        else:
            try:
                target = self.rollout.previous_stable(self.model, self.ref)
            except NotFoundError as e:
                rep.state, rep.message = "no-candidate", f"dry run: {e}"
                return
            rep.state, rep.final = "would-roll-back", target.version
        rep.message = f"dry run: would move {self.ref} to {rep.final}: " + "; ".join(
            rep.violations)

    # -- the incident object and recorded figures ----------------------------------------
    def _read_incident(self, key: str) -> tuple[dict[str, Any] | None, str | None]:
        try:
            raw, token = self.store.get_with_token(key)
        except NotFoundError:
            return None, None
        return json.loads(raw), token

    def _cas_incident(self, key: str, doc: dict[str, Any], token: str | None) -> str | None:
        """Write the incident if nobody changed it since ``token``; None if someone did."""
        try:
            return self.store.replace_if_match(key, json.dumps(doc).encode(), token)
        except ConflictError:
            return None

    def _close(self, seq: int) -> None:
        """A clean check ends a violation streak that has not been acted on."""
        if self.dry_run:
            return
        key = incident_key(self.model, self.ref, seq)
        doc, token = self._read_incident(key)
        if doc is not None and doc["state"] == "open":
            self._cas_incident(key, {**doc, "state": "closed", "closed_at": time.time()}, token)

    def _save_healthy(self, j: _Judged) -> None:
        """Record figures seen while a version passed: later baselines for relative rules
        (at most once per window per version)."""
        last = self._healthy_saved.get(j.version, 0.0)
        if self.dry_run or time.monotonic() - last < self.policy.window:
            return
        figs = {k: v for k, v in j.figures[j.version].items() if math.isfinite(v)}
        self.store.put(healthy_figures_key(self.model, self.ref, j.version),
                       json.dumps(figs).encode())
        self._healthy_saved[j.version] = time.monotonic()


def _incident_seq(rec: RefRecord) -> int:
    """The ref move an incident is keyed by: the ref's last move, unless a watcher made that
    move for an incident (a rollback, abort or restore), which stays that incident: watch
    never cascades from one rollback target to the next on its own."""
    ev = rec.entry.evidence or {}
    if rec.entry.trigger == "auto" and isinstance(ev.get("incident_seq"), int):
        return int(ev["incident_seq"])
    return rec.seq


def metrics_from_command(command: str, *, timeout: float = 60.0
                         ) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Run a shell command that prints figures as JSON: per version under ``"versions"``
    (``{"versions": {"1.0.1": {"error_rate": 0.2}}}``) and/or top-level numbers, which
    apply to the version being judged. Returns (per version, top-level)."""
    try:
        proc = subprocess.run(command, shell=True, capture_output=True, text=True,
                              timeout=timeout, env=for_children())
    except subprocess.TimeoutExpired:
        raise MetricsUnavailable(f"metrics command timed out after {timeout:g}s") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        raise MetricsUnavailable(f"metrics command exited {proc.returncode}: {tail[0]}")
    try:
        doc = json.loads(proc.stdout)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        per_version = {str(v): _numbers(f) for v, f in (doc.get("versions") or {}).items()}
        flat = _numbers({k: x for k, x in doc.items() if k != "versions"})
    except (ValueError, TypeError, AttributeError) as e:
        raise MetricsUnavailable(f"metrics command printed no figures: {e}") from None
    return per_version, flat


def _numbers(doc: Any) -> dict[str, float]:
    if not isinstance(doc, dict):
        raise ValueError(f"expected an object of numbers, got {doc!r}")
    out = {}
    for k, v in doc.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"{k!r} is not a finite number")
        out[str(k)] = float(v)
    return out


def merge_figures(*sources: Figures) -> dict[str, dict[str, float]]:
    """Per-version figures from several sources; later sources win metric by metric."""
    out: dict[str, dict[str, float]] = {}
    for src in sources:
        for v, figs in src.items():
            out.setdefault(v, {}).update(figs)
    return out

