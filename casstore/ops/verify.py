"""verify: check that everything reachable resolves and hashes; repair from a replica.

``verify`` collects every problem instead of stopping at the first: refs and reflog entries
that do not resolve, manifests that do not decode, chunks that are missing or (with
``read_data``) corrupt, each with the versions it affects. ``repair`` copies missing or corrupt
objects from another store holding the same content, checking digests, then re-verifies.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from casstore.digest import Digest
from casstore.errors import CasstoreError, CorruptObjectError, NotFoundError
from casstore.repo.catalog import parse_index_entry
from casstore.repo.chunks import ChunkReader, StoredBase, fetch_object
from casstore.repo.context import StoreContext
from casstore.repo.deltas import KeptBases, delta_children, delta_rounds, depth_order
from casstore.repo.keys import (
    chunk_key,
    expired_key,
    manifest_key,
    tags_prefix,
    versions_prefix,
)
from casstore.repo.manifest import Manifest, decode
from casstore.repo.refs import RefStore
from casstore.repo.stats import recount
from casstore.store.base import ObjectStore

Kind = Literal["missing", "corrupt", "dangling", "unreadable", "stale"]


@dataclass(frozen=True)
class Problem:
    kind: Kind
    object: str  # what is wrong: a chunk, manifest, ref, reflog entry
    detail: str
    versions: tuple[str, ...] = ()  # affected versions, as model@semver

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "object": self.object, "detail": self.detail,
                "versions": list(self.versions)}


@dataclass
class VerifyReport:
    problems: list[Problem] = field(default_factory=list)
    models: int = 0
    versions: int = 0
    refs: int = 0
    reflog_entries: int = 0
    chunks: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    catalogs_rebuilt: list[str] = field(default_factory=list)  # a cache: rebuilt, not a fault

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": [p.to_dict() for p in self.problems],
                "catalogs_rebuilt": self.catalogs_rebuilt,
                "models": self.models, "versions": self.versions, "refs": self.refs,
                "reflog_entries": self.reflog_entries, "chunks": self.chunks,
                "bytes_read": self.bytes_read, "seconds": round(self.seconds, 4)}


def verify(ctx: StoreContext, *, read_data: bool = False, workers: int = 8,
           progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Check every version, ref and reflog entry of the store (chunks decoded, re-hashed and
    checked against the sizes manifests declare with ``read_data``); every problem is
    collected, with the versions it affects. Hostile store content is a problem, never an
    exception: index entries, tags and manifests that cannot be read, inline chunks that do
    not match their digests, and sizes that do not add up are all reported."""
    t0 = time.perf_counter()
    report = VerifyReport()
    store, catalog, refs = ctx.store, ctx.catalog, ctx.refs
    users: dict[Digest, set[str]] = {}  # chunk -> versions using it (delta bases included)
    sizes: dict[Digest, int] = {}  # chunk -> decoded size its manifests declare
    chains: dict[Digest, tuple[Digest, ...]] = {}  # delta -> its bases, nearest first
    manifests: dict[Digest, Manifest] = {}
    for model in catalog.all_models():
        report.models += 1
        for semver, mid in catalog.version_index(model).items():
            report.versions += 1
            label = f"{model}@{semver}"
            m = _manifest(ctx, mid, label, report)
            if m is None:
                continue
            manifests[mid] = m
            for d, n in m.object_sizes().items():
                users.setdefault(d, set()).add(label)
                if sizes.setdefault(d, n) != n:
                    report.problems.append(Problem(
                        "corrupt", f"chunk {d.hex()}",
                        f"manifests declare different sizes for it ({sizes[d]} and {n})",
                        tuple(sorted(users[d]))))
            chains.update(m.delta_chains())
        _check_index(store, model, report)
        _check_refs(store, refs, model, manifests, report)
        _check_catalog(ctx, model, report)
    keys = {chunk_key(d): d for d in users}
    present = store.exists_many(keys)
    for key in sorted(set(keys) - present):
        d = keys[key]
        report.problems.append(Problem("missing", f"chunk {d.hex()}", "chunk object is absent",
                                       tuple(sorted(users[d]))))
    report.chunks = len(keys)
    if read_data:
        bad = {keys[k] for k in set(keys) - present}
        found = _check_chunks(ctx, [keys[k] for k in present], sizes, chains, workers,
                              report, progress)
        bad |= set(found)
        for d, err in sorted(found.items()):
            if any(b in bad for b in chains.get(d, ())):
                continue  # a damaged base: its own problem names the versions (and repair)
            kind: Kind = "unreadable" if err.startswith("unreadable") else "corrupt"
            report.problems.append(Problem(kind, f"chunk {d.hex()}", err,
                                           tuple(sorted(users[d]))))
    report.seconds = time.perf_counter() - t0
    return report


def _check_chunks(
    ctx: StoreContext, digests: list[Digest], sizes: dict[Digest, int],
    chains: dict[Digest, tuple[Digest, ...]], workers: int, report: VerifyReport,
    progress: Callable[[int], None] | None,
) -> dict[Digest, str]:
    """Decode and re-hash every chunk, in batches of at most ``_BATCH_BYTES`` stored bytes
    (``delta_rounds``: a batch of deltas right after the batch holding their bases, so a
    base is kept, as stored, only until its deltas are checked); returns the failures.
    Memory: one batch in flight and one batch's bases as stored."""
    reader = ChunkReader(ctx.store)
    order = depth_order(digests, chains)
    children = delta_children(order, chains)
    bases = KeptBases(children, chains)
    # a chunk missing from the manifests' sizes counts as small: verify finds it anyway
    weights = {d: sizes.get(d, 0) for d in order}

    def check(d: Digest) -> tuple[Digest, int, str | None, memoryview | StoredBase | None]:
        try:
            raw = fetch_object(ctx.store, chunk_key(d))
            keep = bases.needed(d)
            return d, len(raw), None, reader.check(raw, d, sizes.get(d), bases=bases, keep=keep)
        except CorruptObjectError as e:
            return d, 0, str(e), None
        except CasstoreError as e:
            return d, 0, f"unreadable: {e}", None

    failed: dict[Digest, str] = {}
    with ThreadPoolExecutor(workers) as pool:
        for batch in delta_rounds(order, weights, _BATCH_BYTES, children):
            for d, n, err, data in pool.map(check, batch):  # bases only change in between
                report.bytes_read += n
                if progress:
                    progress(n)
                if err is not None:
                    failed[d] = err
                bases.checked(d, data)
    return failed


_BATCH_BYTES = 16 << 20
_BASE_CACHE = 32 << 20  # repair: the replica's bases, for the few chunks being repaired


def _check_catalog(ctx: StoreContext, model: str, report: VerifyReport) -> None:
    """Compare the model's catalog with its index and manifests; rebuild it if they differ
    (it is a cache of them). A store that cannot be written reports the difference."""
    cat = ctx.catalog.models_catalog
    if not ctx.catalog.migrated():
        return  # a store from before catalogs: built by its first write
    differences = cat.check(model)
    if not differences:
        return
    try:
        cat.store_rebuilt(model)
    except CasstoreError as e:
        report.problems.append(Problem("stale", f"catalog of {model}",
                                       f"{'; '.join(differences[:3])} (not rebuilt: {e})"))
        return
    report.catalogs_rebuilt.append(f"{model}: {'; '.join(differences[:3])}")


def _check_index(store: ObjectStore, model: str, report: VerifyReport) -> None:
    """Index entries that name no manifest and tag markers that name no version (hostile or
    damaged objects that listings skip), each reported with the version it concerns."""
    prefix = versions_prefix(model)
    keys = [i.key for i in store.list(prefix)]
    good = [k for k in keys if _SEMVER.fullmatch(k[len(prefix) :])]
    for k in sorted(set(keys) - set(good)):
        report.problems.append(Problem("corrupt", k, "stray object: not a version number"))
    for k in good:
        try:
            parse_index_entry(k, store.get(k))
        except NotFoundError:
            continue  # expired since the listing
        except CorruptObjectError as e:
            report.problems.append(Problem("corrupt", k, str(e),
                                           (f"{model}@{k[len(prefix):]}",)))
    prefix = tags_prefix(model)
    for info in store.list(prefix):
        tag, _, semver = info.key[len(prefix) :].partition("/")
        if not (_SEMVER.fullmatch(semver) and _NAME.fullmatch(tag)):
            report.problems.append(Problem("corrupt", info.key,
                                           "stray object: not a tag/<version> marker"))


_SEMVER = re.compile(r"(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


def _manifest(ctx: StoreContext, mid: Digest, label: str,
              report: VerifyReport) -> Manifest | None:
    try:  # read again (never from a cache): decode, validate sizes, check inline digests
        m = decode(ctx.store.get(manifest_key(mid)), mid)
        for f in m.files:
            for d, data in f.inline.items():
                if Digest.of(data) != Digest(d):
                    raise CorruptObjectError(f"inline chunk {Digest(d).short()} of {f.path} "
                                             "does not match its digest")
        return m
    except NotFoundError:
        report.problems.append(Problem("missing", f"manifest {mid.hex()}",
                                       "manifest object is absent", (label,)))
    except CasstoreError as e:
        report.problems.append(Problem("corrupt", f"manifest {mid.hex()}", str(e), (label,)))
    return None


def _check_refs(store: ObjectStore, refs: RefStore, model: str,
                manifests: dict[Digest, Manifest], report: VerifyReport) -> None:
    try:
        current = refs.list(model)
        entries = refs.reflog(model)
    except CasstoreError as e:
        report.problems.append(Problem("unreadable", f"refs of {model}", str(e)))
        return
    report.refs += len(current)
    report.reflog_entries += len(entries)
    for name, rec in current.items():
        for t in rec.value.versions():  # type: ignore[union-attr]
            if Digest.parse(t.manifest) not in manifests:
                report.problems.append(Problem(
                    "dangling", f"ref {model}@{name}",
                    f"points at {t.version} ({t.manifest[:12]}), which is not stored",
                    (f"{model}@{t.version}",)))
    for e in entries:
        for value in (e.old, e.new):
            for t in value.versions() if value is not None else ():
                if Digest.parse(t.manifest) in manifests:
                    continue
                if store.exists(expired_key(model, t.version)):
                    continue  # expired by a retention policy: history, not damage
                report.problems.append(Problem(
                    "dangling", f"reflog {model}@{e.ref}#{e.seq}",
                    f"names {t.version} ({t.manifest[:12]}), which is neither stored nor "
                    "expired by GC", (f"{model}@{t.version}",)))


@dataclass
class RepairReport:
    repaired: list[str] = field(default_factory=list)
    unrepairable: list[str] = field(default_factory=list)
    after: VerifyReport | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"repaired": self.repaired, "unrepairable": self.unrepairable,
                "after": None if self.after is None else self.after.to_dict()}


def repair(ctx: StoreContext, source: ObjectStore, *, read_data: bool = True,
           rounds: int = 4) -> RepairReport:
    """Restore missing/corrupt chunks and manifests from ``source``, then re-verify.

    Objects from the replica are checked before they are written: a chunk stored there as a
    delta is decoded with its bases read from the replica too, so it is verified whole even
    when the local bases are the damaged ones. A delta hidden behind a damaged base shows
    only once the base is repaired, so verify and repair repeat (at most ``rounds`` times)
    while they find something new to repair.
    """
    out = RepairReport()
    attempted: set[str] = set()
    replica = ChunkReader(source, cache_bytes=_BASE_CACHE)
    report = verify(ctx, read_data=read_data)
    for _ in range(rounds):
        todo = [p for p in report.problems if p.object not in attempted]
        if not todo:
            break
        for p in todo:
            attempted.add(p.object)
            _repair_one(ctx.store, source, replica, p, out)
        report = verify(ctx, read_data=read_data)
    out.after = report
    if out.repaired:  # objects came back: the stats counters' base must see them
        recount(ctx)
    return out


def _repair_one(store: ObjectStore, source: ObjectStore, replica: ChunkReader, p: Problem,
                out: RepairReport) -> None:
    kind, _, hexd = p.object.partition(" ")
    if kind not in ("chunk", "manifest") or p.kind == "dangling":
        out.unrepairable.append(f"{p.object}: {p.detail}")
        return
    d = Digest.parse(hexd)
    key = chunk_key(d) if kind == "chunk" else manifest_key(d)
    try:
        raw = source.get(key)
        if kind == "chunk":
            replica.check(raw, d)
        else:
            decode(raw, d)
    except CasstoreError as e:
        out.unrepairable.append(f"{p.object}: replica cannot supply it ({e})")
        return
    store.put(key, raw)
    out.repaired.append(p.object)
