"""Garbage collection: plan (what would go, bytes freed), then execute. Never loses data.

``plan`` decides which versions expire under the retention policies and which objects nothing
retained refers to: chunks and orphan manifests older than the grace period, and temporary
files of crashed writes. ``execute`` takes the sweep lease (see :mod:`casstore.repo.leases`), waits
for in-flight writes to finish, re-plans from scratch, and deletes only what both plans agree
on. Any listing or read error aborts: an error is never taken for an empty listing. A GC
killed at any moment leaves only unreferenced leftovers, which the next run removes.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from casstore.digest import Digest
from casstore.errors import ConflictError, InvalidInputError, NotFoundError
from casstore.ops.retention import RetentionPolicy, effective_policy
from casstore.repo.catalog import Version
from casstore.repo.context import StoreContext
from casstore.repo.keys import (
    CATALOG_SEGMENTS,
    CHUNKS,
    MANIFESTS,
    chunk_key,
    digest_from_chunk_key,
    digest_from_manifest_key,
    expired_key,
    manifest_key,
    signatures_prefix,
    tag_key,
    version_key,
)
from casstore.repo.leases import Leases
from casstore.repo.stats import mark_sweeping, save_census
from casstore.store.base import ObjectStore

TMP = "tmp/"
DEFAULT_GRACE_SECONDS = 3600.0


@dataclass(frozen=True)
class ExpiredVersion:
    model: str
    version: str
    manifest: str  # hex digest
    tags: tuple[str, ...]

    @property
    def key(self) -> tuple[str, str, str]:
        """Which version this is (its tags may change between two plans)."""
        return self.model, self.version, self.manifest


@dataclass(frozen=True)
class GcPlan:
    """What a GC would do. Frozen: execute deletes at most this."""

    created_at: float
    grace_seconds: float
    override: RetentionPolicy | None
    models: tuple[str, ...] | None
    expire: tuple[ExpiredVersion, ...]
    kept: dict[str, dict[str, list[str]]]  # model -> semver -> reasons
    chunks: tuple[tuple[str, int], ...]  # (hex digest, object size)
    manifests: tuple[tuple[str, int], ...]  # orphan manifests
    tmp: tuple[tuple[str, int], ...]
    referenced_chunks: int
    expired_manifest_bytes: int = 0

    @property
    def bytes_freed(self) -> int:
        return (
            sum(n for _, n in self.chunks)
            + sum(n for _, n in self.manifests)
            + sum(n for _, n in self.tmp)
            + self.expired_manifest_bytes
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "expire": [e.__dict__ for e in self.expire],
            "kept": self.kept,
            "versions_expired": len(self.expire),
            "versions_kept": sum(len(v) for v in self.kept.values()),
            "chunks_to_delete": len(self.chunks),
            "manifests_to_delete": len(self.manifests),
            "tmp_to_delete": len(self.tmp),
            "referenced_chunks": self.referenced_chunks,
            "bytes_freed": self.bytes_freed,
            "grace_seconds": self.grace_seconds,
        }


@dataclass
class GcReport:
    versions_expired: int = 0
    versions_kept: int = 0
    chunks_deleted: int = 0
    manifests_deleted: int = 0
    tmp_deleted: int = 0
    bytes_freed: int = 0
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)  # planned but no longer garbage

    @property
    def objects_deleted(self) -> int:
        return self.chunks_deleted + self.manifests_deleted + self.tmp_deleted

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "objects_deleted": self.objects_deleted,
            "seconds": round(self.seconds, 4),
        }


class GarbageCollector:
    """Plans and executes garbage collection on one store."""

    def __init__(
        self,
        ctx: StoreContext,
        *,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
        wait_timeout: float | None = None,
    ) -> None:
        """``wait_timeout`` bounds how long execute waits for in-flight writers (default:
        the store's lease settings)."""
        if grace_seconds < 0:
            raise InvalidInputError(f"grace must be >= 0 seconds, got {grace_seconds}")
        self.ctx = ctx
        self.store = ctx.store
        self.catalog = ctx.catalog
        self.refs = ctx.refs
        self.grace = float(grace_seconds)
        self.leases = ctx.leases
        if wait_timeout is not None:
            self.leases = Leases(ctx.store, replace(ctx.leases.settings,
                                                    wait_timeout=wait_timeout))
        self._stale: set[str] = set()  # models whose catalog lagged behind the index

    # -- plan ------------------------------------------------------------------------------
    def plan(
        self,
        override: RetentionPolicy | None = None,
        models: Sequence[str] | None = None,
        *,
        now: float | None = None,
    ) -> GcPlan:
        now = time.time() if now is None else now
        self._stale = set()
        now_dt = dt.datetime.fromtimestamp(now, dt.timezone.utc)
        all_models = self.catalog.all_models()
        targets = set(all_models if models is None else models)
        expire: list[ExpiredVersion] = []
        kept: dict[str, dict[str, list[str]]] = {}
        live: set[Digest] = set()
        indexed: set[Digest] = set()
        for model in all_models:
            versions = self._versions(model)
            indexed.update(v.id for v in versions)
            if model not in targets:
                reasons = {v.version: ["not collected"] for v in versions}
            else:
                policy = effective_policy(self.store, model, override)
                reasons = policy.decide(versions, now_dt)
                self._protect_refs(model, reasons, now_dt, policy)
            kept[model] = {k: reasons[k] for k in sorted(reasons)}
            for v in versions:
                if v.version in reasons:
                    live.add(v.id)
                else:
                    expire.append(ExpiredVersion(model, v.version, v.id.hex(), v.tags))
        cutoff = now - self.grace
        referenced: set[Digest] = set()
        orphans: list[tuple[str, int]] = []
        expiring_bytes = 0
        for info in self.store.list(MANIFESTS):
            d = digest_from_manifest_key(info.key)
            if d is None:
                continue
            if d in indexed and d not in live:
                expiring_bytes += info.size  # expiring now
                continue
            if d not in indexed and info.mtime < cutoff and d not in live:
                orphans.append((d.hex(), info.size))  # from a crashed commit or GC
                continue
            live.add(d)  # retained, or too young to judge (a commit may be publishing it)
        for d in live:
            referenced |= self.catalog.manifest(d).chunk_set()
        chunks = [
            (d.hex(), info.size)
            for info in self.store.list(CHUNKS)
            if (d := digest_from_chunk_key(info.key)) is not None
            and d not in referenced
            and info.mtime < cutoff
        ]
        tmp = [(i.key, i.size) for i in self.store.list(TMP) if i.mtime < cutoff]
        tmp += self._stale_segments(all_models, cutoff)
        return GcPlan(
            now,
            self.grace,
            override,
            None if models is None else tuple(models),
            tuple(expire),
            kept,
            tuple(sorted(chunks)),
            tuple(sorted(orphans)),
            tuple(sorted(tmp)),
            len(referenced),
            expiring_bytes,
        )

    def _versions(self, model: str) -> list[Version]:
        """The model's versions from its catalog, checked against a listing of the index
        (one listing): a catalog that lags (a crash between publish and catalog update, or
        an interrupted expiry) is rebuilt from the manifests, in memory while planning."""
        cat = self.catalog.models_catalog
        view = cat.read(model)
        listed = cat.listed(model)
        if view is None or {e.summary.version for e in view.entries()} != listed:
            self._stale.add(model)
            head = cat.rebuild(model)
            return [Version(e.summary, e.tags, None, self.catalog.manifest)
                    for e in sorted(head.tail.values(), key=lambda e: e.summary.key)]
        return [Version(e.summary, e.tags, None, self.catalog.manifest) for e in view.entries()]

    def _stale_segments(self, models: Sequence[str], cutoff: float) -> list[tuple[str, int]]:
        """Catalog segments no head names any more (replaced by merging or compaction)."""
        cat = self.catalog.models_catalog
        named = {cat.segment_key(m, ref) for m in models if (h := cat.head(m)) is not None
                 for ref in h.segs}
        return [(i.key, i.size) for i in self.store.list(CATALOG_SEGMENTS)
                if i.key not in named and i.mtime < cutoff]

    def _protect_refs(
        self, model: str, reasons: dict[str, list[str]], now: dt.datetime, policy: RetentionPolicy
    ) -> None:
        for name, rec in self.refs.list(model).items():
            for t in rec.value.versions():  # type: ignore[union-attr]
                reasons.setdefault(t.version, []).append(f"ref {name}")
        horizon = now - dt.timedelta(seconds=policy.reflog_seconds)
        for e in self.refs.since(model, horizon):  # reads only the retention window
            for value in (e.old, e.new):
                for t in value.versions() if value is not None else ():
                    why = f"reflog {e.ref}#{e.seq}"
                    if why not in reasons.setdefault(t.version, []):
                        reasons[t.version].append(why)

    # -- execute ---------------------------------------------------------------------------
    def execute(self, plan: GcPlan, *, on_wait: Callable[..., None] | None = None) -> GcReport:
        t0 = time.perf_counter()
        report = GcReport()
        with self.leases.sweep(on_wait) as refresh:
            fresh = self.plan(plan.override, plan.models)
            refresh()
            planned = {e.key for e in plan.expire}  # by version and manifest: tags change
            expire = [e for e in fresh.expire if e.key in planned]  # fresh: today's tags
            chosen = {e.key for e in expire}
            report.skipped += [f"{e.model} v{e.version}" for e in plan.expire
                               if e.key not in chosen]
            expire, saved = self._mark_expired(expire, refresh)
            report.skipped += [f"{e.model} v{e.version} (a ref moved to it)" for e in saved]
            # Both plans count the chunks of every version they expire as unreferenced; a
            # version that stays after all (saved, or expiring in one plan only) keeps them.
            gone = {e.key for e in expire}
            keep = {d.hex() for e in fresh.expire if e.key not in gone
                    for d in self.catalog.manifest(Digest.parse(e.manifest)).chunk_set()}
            report.versions_expired = len(expire)
            report.versions_kept = sum(len(v) for v in fresh.kept.values())
            cat = self.catalog.models_catalog
            mark_sweeping(self.ctx)  # until the census below: stats says the count may be off
            for model in sorted(self._stale):  # a catalog that lagged: rebuilt from manifests
                cat.store_rebuilt(model)
                refresh(True)
            for model in sorted({e.model for e in expire}):  # the catalog first: a crash
                cat.expire(model, [e.version for e in expire if e.model == model])  # re-lists
                refresh(True)
            for e in expire:
                refresh(True)  # only when due
                freed = expire_version(self.store, e)
                report.manifests_deleted += 1 if freed else 0
                report.bytes_freed += freed
            refresh()
            fresh_chunks = set(fresh.chunks)
            chunks = [c for c in plan.chunks if c in fresh_chunks and c[0] not in keep]
            fresh_manifests = set(fresh.manifests)
            manifests = [m for m in plan.manifests if m in fresh_manifests]
            fresh_tmp = set(fresh.tmp)
            tmp = [t for t in plan.tmp if t in fresh_tmp]
            report.skipped += [f"chunk {c[0][:12]}" for c in plan.chunks if c not in fresh_chunks]
            for h, n in manifests:
                self.store.delete(manifest_key(Digest.parse(h)))
                report.manifests_deleted += 1
                report.bytes_freed += n
            for batch in _batches(chunks, 1000):
                self._delete_many(chunk_key(Digest.parse(h)) for h, _ in batch)
                report.chunks_deleted += len(batch)
                report.bytes_freed += sum(n for _, n in batch)
                refresh()
            self._delete_many(k for k, _ in tmp)
            report.tmp_deleted = len(tmp)
            report.bytes_freed += sum(n for _, n in tmp)
            refresh()
            save_census(self.ctx)  # writers are still held off: the counters' new base
        self.leases.keep_reserve()  # space for the next sweep's lease on a full disk
        report.seconds = time.perf_counter() - t0
        return report

    def _mark_expired(
        self, expire: list[ExpiredVersion], refresh: Callable[[], None]
    ) -> tuple[list[ExpiredVersion], list[ExpiredVersion]]:
        """Write every expiry marker, wait for the ref movers in flight, *then* re-read the
        refs: a version a ref moved to meanwhile is saved (its marker removed). A mover holds
        a session while it reads the marker and writes the ref, so one side always sees the
        other, even when the mover is killed in between (see :mod:`casstore.repo.leases`).
        Returns (still to expire, saved)."""
        mark_expired(self.store, expire, self.leases, refresh)
        pointed: set[tuple[str, str]] = set()
        for model in {e.model for e in expire}:
            for rec in self.refs.list(model).values():
                pointed.update((model, t.manifest) for t in rec.value.versions())  # type: ignore[union-attr]
        saved = [e for e in expire if (e.model, e.manifest) in pointed]
        unmark_expired(self.store, saved)
        self._clear_stale_markers({(e.model, e.version) for e in expire if e not in saved})
        return [e for e in expire if e not in saved], saved

    def _clear_stale_markers(self, expiring: set[tuple[str, str]]) -> None:
        """Markers of versions that are still indexed and kept (a GC killed between marking
        and deleting) would make ref moves to them fail: remove them."""
        for model in self.catalog.models():
            index = self.catalog.version_index(model)
            prefix = expired_key(model, "0.0.0").rsplit("/", 1)[0] + "/"
            for info in self.store.list(prefix):
                semver = info.key[len(prefix) :]
                if semver not in index or (model, semver) in expiring:
                    continue
                try:
                    marked = json.loads(self.store.get(info.key)).get("manifest")
                except (ValueError, AttributeError, NotFoundError):
                    continue
                if marked == index[semver].hex():  # this very version: it was not expired
                    self.store.delete(info.key)

    def _delete_many(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        if keys:
            self.store.delete_many(keys)

    def collect(
        self, override: RetentionPolicy | None = None, models: Sequence[str] | None = None
    ) -> tuple[GcPlan, GcReport]:
        plan = self.plan(override, models)
        return plan, self.execute(plan)


def expire_version(store: ObjectStore, e: ExpiredVersion) -> int:
    """Expire one version: marker, tags and signatures, then the index entry, then the
    manifest (a crash leaves an orphan at worst, which the next GC removes). Its chunks stay
    until a GC finds nothing retained uses them. Returns the bytes of the manifest removed (0
    if already gone). The caller holds the sweep lease, so no ref move or commit interleaves."""
    mark = json.dumps({"manifest": e.manifest, "expired_at": time.time()}).encode()
    store.put(expired_key(e.model, e.version), mark)
    for t in e.tags:
        store.delete(tag_key(e.model, t, e.version))
    signatures = [i.key for i in store.list(signatures_prefix(e.model, e.version))]
    if signatures:
        store.delete_many(signatures)
    store.delete(version_key(e.model, e.version))
    key = manifest_key(Digest.parse(e.manifest))
    try:
        size = store.stat(key).size
    except NotFoundError:
        return 0
    store.delete(key)
    return size



def mark_expired(
    store: ObjectStore,
    expire: Sequence[ExpiredVersion],
    leases: Leases,
    refresh: Callable[[], None],
) -> None:
    """Write the expiry markers, then wait for the sessions live now to end (the sweep lease
    held, ``refresh`` keeping it): the refs read after this show where every ref move in flight
    left its ref, and later moves see the markers (see :mod:`casstore.repo.leases`).
    ConflictError, with the markers withdrawn, if a session outlives the wait."""
    for e in expire:
        mark = json.dumps({"manifest": e.manifest, "expired_at": time.time()}).encode()
        store.put(expired_key(e.model, e.version), mark)
    try:
        leases.await_sessions(refresh)
    except ConflictError:
        unmark_expired(store, expire)  # nothing expires this time
        raise


def unmark_expired(store: ObjectStore, expire: Iterable[ExpiredVersion]) -> None:
    """Withdraw the markers of versions that stay after all (a ref moved to them)."""
    for e in expire:
        store.delete(expired_key(e.model, e.version))


def _batches(items: Sequence[Any], n: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "ExpiredVersion",
    "GarbageCollector",
    "GcPlan",
    "GcReport",
    "RetentionPolicy",
    "expire_version",
    "mark_expired",
    "unmark_expired",
]
