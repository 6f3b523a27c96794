"""The per-model catalog: every version's summary in a few objects, kept by compare-and-swap.

Layout (keys from :mod:`casstore.repo.keys`)::

    catalog/heads/<model>               the head (msgpack), replaced by compare-and-swap
    catalog/segments/<model>/<digest>   sealed segments: immutable, named by their digest

The head holds ``high`` (the highest version number ever allocated: expired versions count,
so a number is never reused), the ``tail`` (newest entries, at most :data:`SEAL_AT`), the list
of sealed segments (count and semver range of each), an overlay for sealed entries (tags
changed since sealing, versions expired since) that compaction folds in, ``pending`` (numbers
reserved by commits in flight) and the counters ``stats`` uses. A full tail is sealed into a
segment (merged with the last one up to :data:`SEGMENT_MAX` entries), so 100,000 versions are
~25 segments and a head stays a few hundred KB at most.

Manifests stay the source of truth: a version is published by its index entry. A commit
reserves its number in the head (CAS), writes manifest and index entry, then finalizes
(CAS: entry in, reservation out). A crash leaves a reservation; readers resolve it with one
GET of the index entry and the next writer folds it in. A missing head (a store from before
catalogs, or a lost head), an undecodable head or a missing/damaged segment is detected and
rebuilt from the manifests; ``check`` compares a catalog with a listing (verify, GC, repair).
"""

from __future__ import annotations

import heapq
import json
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgpack

from casstore.digest import Digest
from casstore.errors import (
    AlreadyExistsError,
    ConflictError,
    CorruptObjectError,
    InvalidInputError,
    NotFoundError,
)
from casstore.repo.keys import (
    CATALOG_GC,
    CATALOG_HEADS,
    catalog_head_key,
    catalog_segment_key,
    check_name,
    expired_prefix,
    tag_key,
    tags_prefix,
    version_key,
    versions_prefix,
)
from casstore.repo.manifest import Manifest
from casstore.repo.summary import Summary, summarize
from casstore.repo.versioning import semver_key
from casstore.store.base import ObjectStore

SEAL_AT = 128  # tail entries kept in the head before they are sealed into a segment
SEGMENT_MAX = 4096  # a sealed segment grows (by merging) up to this many entries
COMPACT_AT = 256  # overlay entries (tag changes, expiries of sealed versions) before compaction
STALE_PENDING = 3600.0  # an unpublished reservation this old is abandoned (number burned)
PENDING_SETTLE = 5.0  # writers fold in others' reservations and tag changes this old (s)
FORMAT = 1
T = TypeVar("T")


@dataclass
class Entry:
    """One live version in the catalog: its summary and live tags."""

    summary: Summary
    tags: tuple[str, ...] = ()

    def wire(self) -> dict[str, Any]:
        return {**self.summary.to_wire(), "tg": list(self.tags)}

    @classmethod
    def from_wire(cls, w: object) -> Entry:
        s = Summary.from_wire(w)
        tags = w.get("tg") if isinstance(w, dict) else None
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise CorruptObjectError("catalog entry has unreadable tags")
        return cls(s, tuple(tags))


@dataclass(frozen=True)
class SegmentRef:
    digest: str
    count: int
    lo: str
    hi: str


@dataclass
class Head:
    """The mutable part of a model's catalog (decoded)."""

    model: str
    high: str | None = None
    tail: dict[str, Entry] = field(default_factory=dict)
    segs: list[SegmentRef] = field(default_factory=list)
    tags: dict[str, tuple[str, ...]] = field(default_factory=dict)  # sealed entries' tags
    gone: set[str] = field(default_factory=set)  # sealed entries expired since sealing
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)
    tagging: dict[str, dict[str, Any]] = field(default_factory=dict)  # tag changes in flight
    counters: dict[str, int] = field(default_factory=dict)

    def raise_high(self, semver: str) -> None:
        if self.high is None or semver_key(semver) > semver_key(self.high):
            self.high = semver

    def encode(self) -> bytes:
        return msgpack.packb({
            "fmt": FORMAT, "model": self.model, "high": self.high,
            "tail": [e.wire() for _, e in sorted(self.tail.items(), key=_by_semver)],
            "segs": [[s.digest, s.count, s.lo, s.hi] for s in self.segs],
            "tags": {k: list(v) for k, v in self.tags.items()},
            "gone": sorted(self.gone), "pending": self.pending, "counters": self.counters,
            "tagging": self.tagging,
        }, use_bin_type=True)

    @classmethod
    def decode(cls, raw: bytes, model: str) -> Head:
        try:
            w = msgpack.unpackb(raw, raw=False, strict_map_key=True)
            if not isinstance(w, dict) or w.get("fmt") != FORMAT or w.get("model") != model:
                raise ValueError("not a catalog head of this model")
            tail = [Entry.from_wire(x) for x in w["tail"]]
            h = cls(
                model=model,
                high=None if w["high"] is None else _semver(w["high"]),
                tail={e.summary.version: e for e in tail},
                segs=[SegmentRef(Digest.parse(d).hex(), int(n), _semver(lo), _semver(hi))
                      for d, n, lo, hi in w["segs"]],
                tags={_semver(k): tuple(_names(v)) for k, v in w["tags"].items()},
                gone={_semver(x) for x in w["gone"]},
                pending={_semver(k): dict(v) for k, v in w["pending"].items()},
                counters={str(k): int(v) for k, v in w["counters"].items()},
                tagging={_semver(k): {"add": _names(v["add"]), "remove": _names(v["remove"]),
                                      "t": float(v["t"])}
                         for k, v in w.get("tagging", {}).items()},
            )
            if any(e.summary.model != model for e in tail):
                raise ValueError("entry of another model")
            return h
        except (ValueError, TypeError, KeyError, AttributeError, msgpack.UnpackException,
                InvalidInputError, CorruptObjectError) as e:
            raise CorruptObjectError(f"catalog head of {model} is unreadable: {e}") from None


class Torn(CorruptObjectError):
    """A segment the head names is missing or damaged: the catalog must be rebuilt."""


class ModelCatalog:
    """Reads, updates and rebuilds the per-model catalogs of one store."""

    def __init__(self, store: ObjectStore, manifests: Callable[[list[Digest]], dict[Digest,
                 Manifest]]) -> None:
        self.store = store
        self._manifests = manifests  # digest -> manifest, for the ones that exist
        self._segments: dict[str, list[Entry]] = {}  # by digest: immutable, safe to cache
        # model -> the head's bytes and token as this process last read or wrote them: an
        # update swaps against them first (no read when nobody wrote since)
        self._last: dict[str, tuple[bytes, str]] = {}

    # -- reading ---------------------------------------------------------------------------
    def read(self, model: str) -> View | None:
        """The model's catalog as readers see it (None: no such model). O(1) requests plus
        one GET per pending reservation; rebuilt in memory from the manifests if the head
        is missing or unreadable (nothing is written)."""
        head, _ = self._read_head(model, remember=True)
        if head is None:
            if not self._has_versions(model):
                return None
            head = self.rebuild(model)
        return View(self, head)

    def _read_head(self, model: str, *, remember: bool = False
                   ) -> tuple[Head | None, str | None]:
        """The stored head and its token; ``remember``: kept as what the next update swaps
        against first (a stale one fails the swap and is read again)."""
        try:
            raw, token = self.store.get_with_token(catalog_head_key(model))
        except NotFoundError:
            return None, None
        try:
            head = Head.decode(raw, model)
        except CorruptObjectError:
            return self.rebuild(model), token
        if remember:
            self._last[model] = (raw, token)
        return head, token

    def head(self, model: str) -> Head | None:
        """The stored head (None if absent or unreadable)."""
        try:
            return Head.decode(self.store.get(catalog_head_key(model)), model)
        except (NotFoundError, CorruptObjectError):
            return None

    @staticmethod
    def segment_key(model: str, ref: SegmentRef) -> str:
        return catalog_segment_key(model, Digest.parse(ref.digest))

    def listed(self, model: str) -> set[str]:
        """Semantic versions with an index entry: one listing, no reads."""
        prefix = versions_prefix(model)
        return {i.key[len(prefix):] for i in self.store.list(prefix)}

    def deleted(self) -> dict[str, int]:
        """What GC of an earlier release deleted (``catalog/gc``; GC now saves a census)."""
        try:
            data = json.loads(self.store.get(CATALOG_GC))
            return {k: int(data.get(k, 0)) for k in ("chunks", "stored")}
        except (NotFoundError, ValueError, TypeError, AttributeError):
            return {"chunks": 0, "stored": 0}

    def _has_versions(self, model: str) -> bool:
        return next(iter(self.store.list(versions_prefix(model))), None) is not None

    def segment(self, model: str, ref: SegmentRef) -> list[Entry]:
        cached = self._segments.get(ref.digest)
        if cached is not None:
            return cached
        d = Digest.parse(ref.digest)
        try:
            raw = self.store.get(catalog_segment_key(model, d))
        except NotFoundError:
            raise Torn(f"catalog segment {d.short()} of {model} is missing") from None
        if Digest.of(raw) != d:
            raise Torn(f"catalog segment {d.short()} of {model} is damaged")
        try:
            w = msgpack.unpackb(raw, raw=False)
            entries = [Entry.from_wire(x) for x in w["e"]]
        except (ValueError, TypeError, KeyError, msgpack.UnpackException,
                CorruptObjectError) as e:
            raise Torn(f"catalog segment {d.short()} of {model} is unreadable: {e}") from None
        if len(entries) != ref.count or any(e.summary.model != model for e in entries):
            raise Torn(f"catalog segment {d.short()} of {model} does not match its head")
        self._segments[ref.digest] = entries
        return entries

    def _put_segment(self, model: str, entries: list[Entry]) -> SegmentRef:
        entries = sorted(entries, key=lambda e: e.summary.key)
        raw = msgpack.packb({"fmt": FORMAT, "model": model, "e": [e.wire() for e in entries]},
                            use_bin_type=True)
        d = Digest.of(raw)
        self.store.put_if_absent(catalog_segment_key(model, d), raw)
        self._segments[d.hex()] = entries
        return SegmentRef(d.hex(), len(entries), entries[0].summary.version,
                          entries[-1].summary.version)

    # -- writing ---------------------------------------------------------------------------
    def update(self, model: str, fn: Callable[[Head], T], *, attempts: int = 200) -> T:
        """Apply ``fn`` to the head and store it by compare-and-swap, retrying on conflict
        (``fn`` runs again on the fresh head). A missing or torn head is rebuilt first."""
        check_name("model", model)
        for i in range(attempts):
            last = self._last.pop(model, None)  # as last read or written here: often current
            if last is not None:
                head, token = Head.decode(last[0], model), last[1]
            else:
                head, token = self._read_head(model)
            if head is None:
                head = self.rebuild(model) if self._has_versions(model) else Head(model)
            try:
                result = fn(head)
                self._settle(head)
            except Torn:
                head = self.rebuild(model)
                result = fn(head)
                self._settle(head)
            raw = head.encode()
            try:
                self._last[model] = (raw, self.store.replace_if_match(
                    catalog_head_key(model), raw, token))
                return result
            except ConflictError:
                time.sleep(random.uniform(0, min(0.2, 0.005 * (i + 1))))
        raise ConflictError(f"catalog of {model} is too busy: gave up after {attempts} tries")

    def _settle(self, head: Head) -> None:
        """Seal a full tail into segments; compact an overlay that grew too large."""
        if len(head.tags) + len(head.gone) > COMPACT_AT:
            entries = [e for ref in head.segs for e in self._sealed(head, ref)]
            head.segs, head.tags, head.gone = [], {}, set()
            self._append_sealed(head, entries)
        if len(head.tail) > SEAL_AT:
            entries = list(head.tail.values())
            head.tail = {}
            if head.segs and head.segs[-1].count + len(entries) <= SEGMENT_MAX:
                last = head.segs.pop()
                entries = self._sealed(head, last) + entries
            self._append_sealed(head, entries)

    def _sealed(self, head: Head, ref: SegmentRef) -> list[Entry]:
        """A segment's live entries with the overlay applied (and removed from it)."""
        out = []
        for e in self.segment(head.model, ref):
            v = e.summary.version
            if v in head.gone:
                head.gone.discard(v)
                continue
            out.append(Entry(e.summary, head.tags.pop(v, e.tags)))
        return out

    def _append_sealed(self, head: Head, entries: list[Entry]) -> None:
        entries.sort(key=lambda e: e.summary.key)
        for i in range(0, len(entries), SEGMENT_MAX):
            head.segs.append(self._put_segment(head.model, entries[i : i + SEGMENT_MAX]))

    def reserve(self, model: str, pick: Callable[[str | None], str], actor: str) -> str:
        """Reserve a new version number: ``pick(highest ever allocated)`` chooses it. The
        number must not be taken, reserved, or lower-or-equal and expired (callers check)."""
        def fn(head: Head) -> str:
            self._resolve_pending(head)  # a crashed commit's version is folded in here
            top = head.high
            for p in head.pending:
                if top is None or semver_key(p) > semver_key(top):
                    top = p
            semver = pick(top)
            if semver in head.pending or semver in head.tail:
                raise AlreadyExistsError(f"{model} v{semver} is being committed by another writer")
            head.pending[semver] = {"t": time.time(), "by": actor}
            head.raise_high(semver)
            return semver
        return self.update(model, fn)

    def reserve_numbers(self, model: str, semvers: Iterable[str], actor: str) -> list[str]:
        """Reserve numbers chosen by the caller (a transfer copies versions whose numbers are
        fixed) in one compare-and-swap. A number already reserved or in the tail is left to
        the writer holding it (the caller's index entry decides); returns those reserved."""
        wanted = list(semvers)

        def fn(head: Head) -> list[str]:
            self._resolve_pending(head)
            taken = []
            for semver in wanted:
                if semver in head.pending or semver in head.tail:
                    continue
                head.pending[semver] = {"t": time.time(), "by": actor}
                head.raise_high(semver)
                taken.append(semver)
            return taken
        return self.update(model, fn)

    def finalize(self, model: str, entry: Entry | None, semver: str,
                 counters: dict[str, int] | None = None) -> None:
        """Fold a published version in (or, with ``entry=None``, drop a reservation)."""
        self.finalize_many(model, [(semver, entry, counters)])

    def finalize_many(
        self, model: str, items: Iterable[tuple[str, Entry | None, dict[str, int] | None]],
        *, high: str | None = None,
    ) -> None:
        """:meth:`finalize` for several versions ``(semver, entry, counters)`` in one
        compare-and-swap; ``high``: as :meth:`raise_high`, in the same swap."""
        items = list(items)

        def fn(head: Head) -> None:
            if high is not None:
                head.raise_high(high)
            for semver, entry, counters in items:
                head.pending.pop(semver, None)
                if entry is None:
                    continue
                if semver not in head.tail and not self._sealed_has(head, semver):
                    head.tail[semver] = entry
                    _count(head, entry.summary, +1)
                for k, n in (counters or {}).items():
                    head.counters[k] = head.counters.get(k, 0) + n
                head.raise_high(semver)
        self.update(model, fn)

    def change_tags(self, model: str, semver: str, add: Iterable[str] = (),
                    remove: Iterable[str] = ()) -> tuple[str, ...]:
        """Add and remove live tags: record the intent in the head, write or delete the tag
        markers (the source of truth), then apply it. A crash in between leaves the intent,
        which the next writer (or a reader, in memory) settles by asking whether each
        marker exists. Returns the version's tags afterwards."""
        add, remove = sorted(set(add)), sorted(set(remove) - set(add))

        def intend(head: Head) -> None:
            self._resolve_pending(head)
            if self._tags_of(head, semver) is None:
                raise NotFoundError(f"model {model!r} has no version {semver!r}")
            head.tagging[semver] = {"add": add, "remove": remove, "t": time.time()}
        self.update(model, intend)
        for t in add:
            self.store.put_if_absent(tag_key(model, t, semver), b"")
        for t in remove:
            self.store.delete(tag_key(model, t, semver))

        def apply(head: Head) -> tuple[str, ...]:
            self._resolve_pending(head)
            head.tagging.pop(semver, None)
            old = self._tags_of(head, semver)
            if old is None:  # expired meanwhile
                return ()
            return self._set_tags(head, semver, tuple(sorted((set(old) | set(add)) -
                                                             set(remove))))
        return self.update(model, apply)

    def _tags_of(self, head: Head, semver: str) -> tuple[str, ...] | None:
        if semver in head.tail:
            return head.tail[semver].tags
        return self._sealed_tags(head, semver)

    def _set_tags(self, head: Head, semver: str, tags: tuple[str, ...]) -> tuple[str, ...]:
        if semver in head.tail:
            head.tail[semver].tags = tags
        else:
            head.tags[semver] = tags
        return tags

    def settle_tags(self, head: Head, semver: str) -> tuple[str, ...] | None:
        """The tags of ``semver`` under an interrupted change, from its markers."""
        intent = head.tagging.get(semver)
        old = self._tags_of(head, semver)
        if intent is None or old is None:
            return old
        changed = intent["add"] + intent["remove"]
        present = self.store.exists_many([tag_key(head.model, t, semver) for t in changed])
        now = set(old)
        for t in changed:
            (now.add if tag_key(head.model, t, semver) in present else now.discard)(t)
        return tuple(sorted(now))

    def expire(self, model: str, semvers: Iterable[str]) -> None:
        """Drop expired versions (GC); ``high`` keeps their numbers from being reused."""
        gone = set(semvers)

        def fn(head: Head) -> None:
            for v in gone:
                head.raise_high(v)
                head.tagging.pop(v, None)
                if v in head.tail:
                    _count(head, head.tail.pop(v).summary, -1)
                elif v not in head.gone and self._sealed_has(head, v):
                    e = self._find_sealed(head, v)
                    head.gone.add(v)
                    head.tags.pop(v, None)
                    if e is not None:
                        _count(head, e.summary, -1)
        self.update(model, fn)

    def raise_high(self, model: str, semver: str) -> None:
        """Make sure numbers up to ``semver`` are never allocated again (a replica)."""
        self.update(model, lambda head: head.raise_high(semver))

    def store_rebuilt(self, model: str) -> Head:
        """Rebuild a model's catalog from its manifests and store it (verify, repair, GC)."""
        def fn(head: Head) -> Head:
            fresh = self.rebuild(model, head)
            head.__dict__.update(fresh.__dict__)
            return head
        return self.update(model, fn)

    def _resolve_pending(self, head: Head) -> None:
        """Fold in what crashed (or slow) writers left: published reservations, tag changes.
        Younger ones than :data:`PENDING_SETTLE` belong to live writers, which finish them
        (asking about each would cost every racing writer a request per rival)."""
        settled = time.time() - PENDING_SETTLE
        for semver in [k for k, p in head.pending.items() if float(p.get("t", 0)) <= settled]:
            self._resolve_one(head, semver, drop_after=STALE_PENDING)
        for semver in [k for k, p in head.tagging.items() if float(p.get("t", 0)) <= settled]:
            tags = self.settle_tags(head, semver)
            head.tagging.pop(semver)
            if tags is not None:
                self._set_tags(head, semver, tags)

    def _resolve_one(self, head: Head, semver: str, *, drop_after: float) -> None:
        e = self.published(head.model, semver)
        if e is not None:
            head.pending.pop(semver)
            if semver not in head.tail and not self._sealed_has(head, semver):
                head.tail[semver] = e
                _count(head, e.summary, +1)
        elif time.time() - float(head.pending[semver].get("t", 0)) > drop_after:
            head.pending.pop(semver)  # abandoned by a crashed writer; the number stays used

    def published(self, model: str, semver: str) -> Entry | None:
        """The entry of a published version, read from its index entry and manifest."""
        try:
            d = index_digest(self.store.get(version_key(model, semver)), model, semver)
        except NotFoundError:
            return None
        m = self._manifests([d]).get(d)
        if m is None or m.model != model or m.version != semver:
            return None
        keys = {tag_key(model, t, semver): t for t in m.tags}  # a crash may have cut them short
        present = self.store.exists_many(keys) if keys else set()
        return Entry(summarize(m, d), tuple(sorted(keys[k] for k in present)))

    def _sealed_has(self, head: Head, semver: str) -> bool:
        return self._find_sealed(head, semver) is not None and semver not in head.gone

    def _find_sealed(self, head: Head, semver: str) -> Entry | None:
        k = semver_key(semver)
        for ref in head.segs:
            if semver_key(ref.lo) <= k <= semver_key(ref.hi):
                for e in self.segment(head.model, ref):
                    if e.summary.version == semver:
                        return e
        return None

    def _sealed_tags(self, head: Head, semver: str) -> tuple[str, ...] | None:
        if semver in head.gone:
            return None
        if semver in head.tags:
            return head.tags[semver]
        e = self._find_sealed(head, semver)
        return None if e is None else e.tags

    # -- rebuilding ------------------------------------------------------------------------
    def rebuild(self, model: str, old: Head | None = None) -> Head:
        """A head holding every indexed version, from the manifests (O(versions) requests).
        Keeps ``old``'s allocation high-water mark, unpublished reservations and counters."""
        index = self.index(model)
        found = self._manifests(sorted(set(index.values())))
        tags = self._tag_markers(model)
        head = Head(model)
        entries = []
        for semver, d in index.items():
            m = found.get(d)
            if m is None or m.model != model or m.version != semver:
                continue  # verify reports it; a catalog lists only readable versions
            entries.append(Entry(summarize(m, d), tuple(sorted(tags.get(semver, ())))))
        for semver in [*index, *self._expired(model)]:
            head.raise_high(semver)
        if old is not None:
            if old.high is not None:
                head.raise_high(old.high)
            head.pending = {k: v for k, v in old.pending.items() if k not in index}
            head.counters = {k: v for k, v in old.counters.items()  # commits' cumulative ones
                             if k not in ("versions", "logical")}
        for e in entries:
            _count(head, e.summary, +1)
        head.tail = {e.summary.version: e for e in entries}
        return head

    def index(self, model: str) -> dict[str, Digest]:
        """semver -> manifest digest of every index entry (a listing plus one GET each)."""
        prefix = versions_prefix(model)
        keys = [i.key for i in self.store.list(prefix)]
        out = {}
        for key, raw in self.store.get_many(keys).items():
            semver = key[len(prefix):]
            try:
                out[_semver(semver)] = index_digest(raw, model, semver)
            except (CorruptObjectError, InvalidInputError):
                continue  # a stray or damaged entry: verify reports it
        return out

    def _tag_markers(self, model: str) -> dict[str, set[str]]:
        prefix = tags_prefix(model)
        out: dict[str, set[str]] = {}
        for info in self.store.list(prefix):
            tag, _, semver = info.key[len(prefix):].partition("/")
            out.setdefault(semver, set()).add(tag)
        return out

    def _expired(self, model: str) -> list[str]:
        prefix = expired_prefix(model)
        out = []
        for info in self.store.list(prefix):
            try:
                out.append(_semver(info.key[len(prefix):]))
            except InvalidInputError:
                continue
        return out

    def check(self, model: str) -> list[str]:
        """How the stored catalog differs from the index and manifests (empty: in sync)."""
        try:
            head = Head.decode(self.store.get(catalog_head_key(model)), model)
        except NotFoundError:
            return ["catalog is missing"] if self._has_versions(model) else []
        except CorruptObjectError as e:
            return [str(e)]
        try:
            view = View(self, head, resolve=False, rebuild=False)
            have = {e.summary.version: (e.summary.manifest, e.tags) for e in view.entries()}
        except Torn as e:
            return [str(e)]
        want = {e.summary.version: (e.summary.manifest, e.tags)
                for e in self.rebuild(model).tail.values()}
        problems = []
        for v in sorted(set(want) - set(have), key=semver_key):
            if v not in head.pending:
                problems.append(f"v{v} is published but not in the catalog")
        problems += [f"v{v} is in the catalog but not published"
                     for v in sorted(set(have) - set(want), key=semver_key)]
        problems += [f"v{v} differs (manifest or tags)"
                     for v in sorted(set(have) & set(want), key=semver_key) if have[v] != want[v]]
        return problems

    def model_names(self) -> list[str]:
        return sorted(i.key[len(CATALOG_HEADS):] for i in self.store.list(CATALOG_HEADS))


class View:
    """A reader's view of one model's catalog; segments are read only when needed."""

    def __init__(self, cat: ModelCatalog, head: Head, *, resolve: bool = True,
                 rebuild: bool = True) -> None:
        self.cat, self.head, self._rebuild = cat, head, rebuild
        self.extra: dict[str, Entry] = {}
        self.retagged: dict[str, tuple[str, ...]] = {}
        if resolve:
            for semver in head.pending:
                e = cat.published(head.model, semver)
                if e is not None and semver not in head.tail:
                    self.extra[semver] = e
            for semver in head.tagging:
                tags = cat.settle_tags(head, semver)
                if tags is not None:
                    self.retagged[semver] = tags

    @property
    def high(self) -> str | None:
        return self.head.high

    def _retry_torn(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except Torn:
            if not self._rebuild:
                raise
            self.head, self.extra = self.cat.rebuild(self.head.model), {}
            return fn()

    def _loose(self) -> list[Entry]:
        return [self._retag(e) for e in [*self.head.tail.values(), *self.extra.values()]]

    def _retag(self, e: Entry) -> Entry:
        tags = self.retagged.get(e.summary.version)
        return e if tags is None else Entry(e.summary, tags)

    def _segment_entries(self, ref: SegmentRef) -> Iterator[Entry]:
        h = self.head
        for e in self.cat.segment(h.model, ref):
            v = e.summary.version
            if v not in h.gone and v not in self.extra and v not in h.tail:
                yield Entry(e.summary, self.retagged.get(v, h.tags.get(v, e.tags)))

    def newest(self, limit: int | None = None) -> list[Entry]:
        """Live entries, highest semantic version first; reads only the segments needed."""
        def run() -> list[Entry]:
            found = self._loose()
            for ref in sorted(self.head.segs, key=lambda r: semver_key(r.hi), reverse=True):
                if limit is not None and len(found) >= limit:
                    kth = heapq.nlargest(limit, (e.summary.key for e in found))[-1]
                    if kth > semver_key(ref.hi):
                        break
                found.extend(self._segment_entries(ref))
            found.sort(key=lambda e: e.summary.key, reverse=True)
            return found if limit is None else found[:limit]
        return self._retry_torn(run)

    def entries(self) -> list[Entry]:
        """Every live entry, oldest semantic version first."""
        return list(reversed(self.newest()))

    def get(self, semver: str) -> Entry | None:
        def run() -> Entry | None:
            e = self.head.tail.get(semver) or self.extra.get(semver)
            if e is not None or semver in self.head.gone:
                return None if e is None else self._retag(e)
            k = semver_key(semver)
            for ref in self.head.segs:
                if semver_key(ref.lo) <= k <= semver_key(ref.hi):
                    for x in self._segment_entries(ref):
                        if x.summary.version == semver:
                            return x
            return None
        return self._retry_torn(run)

    @property
    def counters(self) -> dict[str, int]:
        c = dict(self.head.counters)
        for e in self.extra.values():
            c["versions"] = c.get("versions", 0) + 1
            c["logical"] = c.get("logical", 0) + e.summary.size_bytes
        return c


def _count(head: Head, s: Summary, sign: int) -> None:
    c = head.counters
    c["versions"] = c.get("versions", 0) + sign
    c["logical"] = c.get("logical", 0) + sign * s.size_bytes


def index_digest(raw: bytes, model: str, semver: str) -> Digest:
    try:
        return Digest.parse(json.loads(raw)["manifest"])
    except (ValueError, KeyError, TypeError, InvalidInputError) as e:
        raise CorruptObjectError(f"version index entry {model} v{semver} is unreadable") from e


def _semver(x: object) -> str:
    from casstore.repo.keys import check_semver

    return check_semver(x)


def _names(x: object) -> list[str]:
    if not isinstance(x, list):
        raise TypeError("expected a list of names")
    return [check_name("tag", t) for t in x]


def _by_semver(kv: tuple[str, Entry]) -> tuple[int, int, int]:
    return semver_key(kv[0])
