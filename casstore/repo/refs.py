"""Refs: the only mutable objects, moved by compare-and-swap, each move kept in a reflog.

A ref (``current``, ``production``, ``canary`` ...) points at one version, or holds a weighted
split between two versions during a progressive rollout or rollback. Each ref object embeds
the reflog entry of the move that wrote it, so the ref and its history entry land in one
atomic write; the entry is then copied to ``reflog/<ref>/<seq>`` (create-if-absent), and the
next mover repairs that copy if a crash lost it. Hence the reflog holds exactly one entry per
landed update, and a ref is never torn: readers see the old or the new object.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import socket
from collections.abc import Callable, Iterator
from typing import Any, Literal

from casstore.digest import hasher
from casstore.errors import (
    ConflictError,
    CorruptObjectError,
    InvalidInputError,
    NotFoundError,
    UnsupportedError,
)
from casstore.records import Record, ValidationError
from casstore.repo.keys import (
    check_name,
    expired_key,
    ref_key,
    reflog_key,
    reflog_prefix,
    refs_prefix,
)
from casstore.repo.leases import move_session
from casstore.store.base import ObjectStore, together

Trigger = Literal[
    "user",
    "commit",
    "promote",
    "rollback",
    "health-check",
    "metric-regression",
    "progressive-step",
    "auto-revert",
    "replicate",
    "auto",
]
"""Why a ref moved. ``auto``: ``casstore watch`` acted on live figures (evidence attached)."""


class Target(Record, kw_only=True):
    """One version, by semantic version and manifest digest (hex)."""

    version: str
    manifest: str


class Split(Record, kw_only=True):
    """A weighted split: ``weight`` of the traffic goes to ``candidate``, the rest to ``base``."""

    base: Target
    candidate: Target
    weight: float
    steps: tuple[float, ...] = ()  # the planned weights, for ``advance``

    def __post_init__(self) -> None:
        if not 0.0 < self.weight < 1.0:
            raise ValueError(f"a split's weight is between 0 and 1, not {self.weight!r}")


class RefValue(Record, kw_only=True):
    """Where a ref points: exactly one of a single target or a split."""

    target: Target | None = None
    split: Split | None = None

    def __post_init__(self) -> None:
        if (self.target is None) == (self.split is None):
            raise ValueError("a ref value is either a target or a split")

    @classmethod
    def of(cls, target: Target) -> RefValue:
        return cls(target=target)

    def versions(self) -> list[Target]:
        """Every version this value keeps alive (both sides of a split)."""
        if self.target is not None:
            return [self.target]
        assert self.split is not None
        return [self.split.base, self.split.candidate]

    def describe(self) -> str:
        if self.target is not None:
            return self.target.version
        assert self.split is not None
        s = self.split
        return f"{s.base.version} ({1 - s.weight:.0%}) / {s.candidate.version} ({s.weight:.0%})"


class ReflogEntry(Record, kw_only=True):
    """One ref move: old, new, when, who, why, and what triggered it."""

    model: str
    ref: str
    seq: int
    old: RefValue | None
    new: RefValue | None  # None: the ref was deleted
    time: dt.datetime
    actor: str
    reason: str = ""
    trigger: Trigger = "user"
    op: str = "move"
    # what an automatic move acted on (figures, violations, incident); left out when None,
    # so entries without evidence keep the bytes older readers expect
    evidence: dict[str, Any] | None = None
    # the previous entry's time, so a walk back in time stops before reading it
    prev_time: dt.datetime | None = None

    def __post_init__(self) -> None:
        for name in ("actor", "reason", "op"):  # text, never bytes turned into base64
            value = getattr(self, name)
            if not isinstance(value, str):
                raise InvalidInputError(
                    f"invalid ref move: {name} must be text, not {type(value).__name__}"
                )

    def to_builtins(self) -> dict[str, Any]:
        out = super().to_builtins()
        for optional in ("evidence", "prev_time"):
            if out[optional] is None:
                del out[optional]
        return out


class RefRecord(Record, kw_only=True):
    """What a ref object holds: its value and the entry of the move that wrote it."""

    format_version: int = 1
    value: RefValue | None
    entry: ReflogEntry

    @property
    def seq(self) -> int:
        return self.entry.seq

    def to_builtins(self) -> dict[str, Any]:
        return {**super().to_builtins(), "entry": self.entry.to_builtins()}


def default_actor() -> str:
    """``user@host`` of this process (the CLI lets ``$CASSTORE_ACTOR`` override it)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def split_fraction(model: str, ref: str, request_key: str) -> float:
    """A stable number in [0, 1) for a request key: the sticky position in a split."""
    h = hasher()
    h.update(f"{model}\0{ref}\0{request_key}".encode())
    return int.from_bytes(h.digest()[:8], "big") / 2.0**64


def _expiring_msg(model: str, version: str, ref: str, done: str) -> str:
    return (f"{model} {version} is being expired by a garbage collection, so {ref} was "
            f"{done}; choose a version the retention policy keeps (or tag it first)")


def _dump(record: RefRecord | ReflogEntry) -> bytes:
    return json.dumps(record.to_builtins(), sort_keys=True).encode()


class RefStore:
    """Compare-and-swap refs and their reflog on an ObjectStore."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        single_writer: bool = False,
        conditional: bool = True,
        actor: str | None = None,
    ) -> None:
        self.store = store
        self.actor = actor or default_actor()
        # the reflog entry of each ref's record as last read here (remote stores): a move
        # copies it while it reads the ref again, not after
        self._seen: dict[tuple[str, str], ReflogEntry] = {}
        self.single_writer = single_writer
        self.conditional = conditional and store.capabilities.conditional_replace

    # -- reading -------------------------------------------------------------------------
    def read(self, model: str, ref: str) -> tuple[RefRecord | None, str | None]:
        """The ref's record and CAS token, or (None, None) if it never existed."""
        try:
            raw, token = self.store.get_with_token(ref_key(model, ref))
        except NotFoundError:
            return None, None
        rec = self._parse(raw, model, ref)
        if not self.store.capabilities.local:
            self._seen[(model, ref)] = rec.entry
        return rec, token

    def get(self, model: str, ref: str) -> RefValue:
        rec, _ = self.read(model, ref)
        if rec is None or rec.value is None:
            raise NotFoundError(f"model {model!r} has no ref {ref!r}")
        return rec.value

    def list(self, model: str) -> dict[str, RefRecord]:
        """Every ref of ``model`` that points somewhere: one listing, the records read in
        one batch (on S3 their requests in flight together)."""
        prefix = refs_prefix(model)
        names = [info.key[len(prefix) :] for info in self.store.list(prefix)]
        raws = self.store.get_found([ref_key(model, n) for n in names])  # one gone since: out
        recs = {n: self._parse(raws[ref_key(model, n)], model, n) for n in names
                if ref_key(model, n) in raws}
        return {n: r for n, r in sorted(recs.items()) if r.value is not None}

    def resolve(self, model: str, ref: str, request_key: str | None = None) -> Target:
        """The version a ref sends ``request_key`` to (the base of a split without a key)."""
        value = self.get(model, ref)
        if value.target is not None:
            return value.target
        assert value.split is not None
        if request_key is None:
            return value.split.base
        frac = split_fraction(model, ref, request_key)
        return value.split.candidate if frac < value.split.weight else value.split.base

    def reflog(self, model: str, ref: str | None = None) -> list[ReflogEntry]:
        """Every recorded move, oldest first (of one ref, or of all refs of the model)."""
        names = [ref] if ref is not None else self._reflog_refs(model)
        entries: dict[tuple[str, int], ReflogEntry] = {}
        for name in names:
            prefix = reflog_prefix(model, name)
            keys = [i.key for i in self.store.list(prefix)]
            for key, raw in self.store.get_many(keys).items():
                e = self._parse_entry(raw, key)
                entries[(e.ref, e.seq)] = e
            rec, _ = self.read(model, name)
            if rec is not None:  # the newest entry may not be copied out yet
                entries[(name, rec.seq)] = rec.entry
        return sorted(entries.values(), key=lambda e: (e.time, e.ref, e.seq))

    def history(self, model: str, ref: str) -> Iterator[ReflogEntry]:
        """The moves of one ref, newest first, read lazily: the ref object holds the newest
        entry and older ones are fetched by sequence number in pages that double (4, 8, ...),
        so a caller that stops early pays for the entries it looked at, not the whole log."""
        rec, _ = self.read(model, ref)
        if rec is None:
            return
        yield rec.entry
        seq, page = rec.seq - 1, 4
        while seq >= 0:
            keys = [reflog_key(model, ref, s) for s in range(seq, max(seq - page, -1), -1)]
            try:
                got = self.store.get_many(keys)
            except NotFoundError:  # only the newest copy can be missing (a crashed mover)
                got = {}
                for key in keys:
                    try:
                        got[key] = self.store.get(key)
                    except NotFoundError:
                        break
            for key in keys:
                if key not in got:
                    return
                yield self._parse_entry(got[key], key)
            seq, page = seq - page, page * 2

    def _reflog_refs(self, model: str) -> list[str]:
        return sorted(self.list_all_names(model))  # a ref object outlives its deletion

    def walk(self, model: str, ref: str, stop: Callable[[ReflogEntry], bool]) -> \
            list[ReflogEntry]:
        """Entries of one ref, newest first, up to and including the first one ``stop``
        accepts. Reads only those entries: each entry records its predecessor's time, so
        a walk bounded by time (``since``) stops without reading the older one."""
        rec, _ = self.read(model, ref)
        out: list[ReflogEntry] = []
        e = None if rec is None else rec.entry
        while e is not None:
            out.append(e)
            if stop(e) or e.seq == 0:
                break
            e = self._entry(model, ref, e.seq - 1)
        return out

    def since(self, model: str, when: dt.datetime) -> list[ReflogEntry]:
        """Every entry (of every ref of ``model``) at or after ``when``: reads only those."""
        out = []
        for name in self._reflog_refs(model):
            entries = self.walk(model, name, lambda e: e.prev_time is not None
                                and e.prev_time < when)
            out += [e for e in entries if e.time >= when]
        return sorted(out, key=lambda e: (e.time, e.ref, e.seq))

    def at(self, model: str, when: dt.datetime, ref: str | None = None) -> list[ReflogEntry]:
        """The entry that set each ref's value at ``when`` (refs created later are left out);
        reads the entries after ``when`` and one more per ref."""
        out = []
        for name in [ref] if ref is not None else self._reflog_refs(model):
            entries = self.walk(model, name, lambda e: e.time <= when)
            if entries and entries[-1].time <= when:
                out.append(entries[-1])
        return sorted(out, key=lambda e: e.ref)

    def _entry(self, model: str, ref: str, seq: int) -> ReflogEntry | None:
        key = reflog_key(model, ref, seq)
        try:
            return self._parse_entry(self.store.get(key), key)
        except NotFoundError:
            return None

    def list_all_names(self, model: str) -> list[str]:
        prefix = refs_prefix(model)
        return [i.key[len(prefix) :] for i in self.store.list(prefix)]

    # -- writing -------------------------------------------------------------------------
    def check_writable(self) -> None:
        """Refuse ref moves on a backend that cannot compare-and-swap (unless single-writer)."""
        if not (self.conditional or self.single_writer):
            raise UnsupportedError(
                f"{self.store.url} does not honour conditional writes, so refs could be lost "
                "when several writers move them at once; if only one process ever writes to "
                "this store, run: casstore init --single-writer"
            )

    def move(
        self,
        model: str,
        ref: str,
        new: RefValue | None,
        *,
        expected_seq: int | Literal["any"] | None = "any",
        actor: str | None = None,
        reason: str = "",
        trigger: Trigger = "user",
        op: str = "move",
        evidence: dict[str, Any] | None = None,
        check: Callable[[], None] | None = None,
    ) -> ReflogEntry:
        """Move ``ref`` to ``new`` by compare-and-swap.

        ``check`` (e.g. the trust policy's) runs before the swap, its requests in flight
        with the move's first reads on a remote store; what it raises refuses the move.

        ``expected_seq`` is the sequence number the caller read (``None``: the ref must not
        exist yet); if the ref moved since, ConflictError. With "any" the move applies on top
        of whatever is there now (still atomic: a concurrent move makes this one fail).
        """
        check_name("ref", ref)
        self.check_writable()
        with move_session(self.store):  # GC waits for it before it re-reads the refs
            # the record's reflog entry must be stored before the record is replaced (a
            # mover killed after its swap left it only there); one read earlier here is
            # copied while the ref is read again (an older entry copied is still its own)
            seen = self._seen.get((model, ref))

            def read_ref() -> tuple[RefRecord | None, str | None]:
                if seen is None:
                    return self.read(model, ref)
                return together(self.store, lambda: self.read(model, ref),
                                lambda: self._copy_entry(seen))[0]

            def expired_target() -> str | None:
                if check is None:
                    return self._expired_target(model, new)
                return together(self.store, lambda: self._expired_target(model, new), check)[0]

            expired, (rec, token) = together(self.store, expired_target, read_ref)
            if expired is not None:
                raise ConflictError(_expiring_msg(model, expired, ref, "not moved"))
            seq = -1 if rec is None else rec.seq
            if expected_seq != "any" and (
                (expected_seq is None and rec is not None)
                or (expected_seq is not None and expected_seq != seq)
            ):
                raise ConflictError(f"ref {model}@{ref} moved (now at #{seq}); re-read and retry")
            if rec is not None and rec.entry != seen:
                self._copy_entry(rec.entry)
            entry = ReflogEntry(
                model=model,
                ref=ref,
                seq=seq + 1,
                old=None if rec is None else rec.value,
                new=new,
                time=dt.datetime.now(dt.timezone.utc),
                actor=actor or self.actor,
                reason=reason,
                trigger=trigger,
                op=op,
                evidence=evidence,
                prev_time=None if rec is None else rec.entry.time,
            ).checked("ref move")  # a reason or actor that is not text is refused, not stored
            record = RefRecord(value=new, entry=entry)
            new_token = self.store.replace_if_match(ref_key(model, ref), _dump(record), token)
            _, expired = together(self.store, lambda: self._copy_entry(entry),
                                  lambda: self._expired_target(model, new))
            if expired is not None:  # GC took this mover's session for stale (slow, elsewhere)
                self._revert(model, ref, entry, new_token)
                raise ConflictError(_expiring_msg(model, expired, ref, "moved back"))
            return entry

    def _expired_target(self, model: str, value: RefValue | None) -> str | None:
        """The version of ``value`` that GC has marked expired, if any.

        Read under the mover's session, before the ref is written and again after: GC
        writes a version's marker, waits for the live sessions, then re-reads the refs (see
        :mod:`casstore.repo.leases`), so either GC sees this ref or this read sees the marker.
        """
        for t in value.versions() if value is not None else ():
            try:
                raw = self.store.get(expired_key(model, t.version))
            except NotFoundError:
                continue
            try:
                marked = json.loads(raw).get("manifest")
            except (ValueError, AttributeError):
                marked = None
            if marked in (None, t.manifest):
                return t.version
        return None

    def _revert(self, model: str, ref: str, entry: ReflogEntry, token: str) -> None:
        back = RefRecord(value=entry.old, entry=entry.replace(
            seq=entry.seq + 1, old=entry.new, new=entry.old,
            time=dt.datetime.now(dt.timezone.utc), trigger="auto-revert",
            op="revert", reason="target is being expired by GC"))
        try:
            self.store.replace_if_match(ref_key(model, ref), _dump(back), token)
        except ConflictError:
            return  # moved again meanwhile: that move checked its own target
        self._copy_entry(back.entry)

    def _copy_entry(self, entry: ReflogEntry) -> None:
        self.store.put_if_absent(reflog_key(entry.model, entry.ref, entry.seq), _dump(entry))

    # -- parsing -------------------------------------------------------------------------
    @staticmethod
    def _parse(raw: bytes, model: str, ref: str) -> RefRecord:
        try:
            rec = RefRecord.parse(json.loads(raw))  # json: reads NaN in evidence, as written
        except (ValueError, ValidationError) as e:
            raise CorruptObjectError(f"ref {model}@{ref} is unreadable: {e}") from e
        if rec.entry.model != model or rec.entry.ref != ref:
            raise CorruptObjectError(f"ref {model}@{ref} holds another ref's record")
        return rec

    @staticmethod
    def _parse_entry(raw: bytes, key: str) -> ReflogEntry:
        try:
            return ReflogEntry.parse(json.loads(raw))
        except (ValueError, ValidationError) as e:
            raise CorruptObjectError(f"reflog entry {key} is unreadable: {e}") from e
