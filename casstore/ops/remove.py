"""Deleting versions on purpose (``casstore rm``): expire them now, as GC expires versions.

``remove`` refuses a version any ref points at (either side of a progressive split) with a
message that names the ref; it does not look at the reflog: an explicit ``rm`` is the user's
decision, and a later ``rollback`` to a removed version is refused cleanly because rollouts
check that their target is still indexed. The check and the expiry run under the GC sweep
lease, after in-flight writers have drained; the expiry markers are written, and the ref moves
in flight drained, before the check, and later movers read the markers, so no ref move can
land on a version between the check and its removal (see :mod:`casstore.repo.leases`). Chunks
the removed versions used alone are reclaimed by the next GC (once older than its grace
period). Like a GC sweep, ``rm`` then recounts the store (every live manifest, one listing of
chunks and of manifests) so the stats counters stay exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from casstore.errors import InvalidInputError
from casstore.ops.gc import ExpiredVersion, expire_version, mark_expired, unmark_expired
from casstore.repo.catalog import Version
from casstore.repo.context import StoreContext
from casstore.repo.stats import mark_sweeping, prefetch_manifests, save_census


@dataclass(frozen=True)
class Removed:
    """What :func:`remove` expired (or, with ``dry_run``, would expire)."""

    model: str
    versions: tuple[ExpiredVersion, ...]
    manifest_bytes: int = 0
    dry_run: bool = False

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "removed": [e.version for e in self.versions],
            "manifest_bytes": self.manifest_bytes,
            "dry_run": self.dry_run,
        }


def remove(
    ctx: StoreContext,
    model: str,
    specs: Sequence[str],
    *,
    dry_run: bool = False,
    on_wait: Callable[[int], None] | None = None,
) -> Removed:
    """Expire the versions ``specs`` of ``model``; InvalidInputError (nothing removed) if any
    does not exist twice over or a ref points at one. Takes the sweep lease unless ``dry_run``."""
    if not specs:
        raise InvalidInputError("name at least one version to remove")
    targets = _resolve(ctx, model, specs)
    if dry_run:
        _check_unreferenced(ctx, model, targets)
        return Removed(model, tuple(_expired(v) for v in targets), dry_run=True)
    prefetch_manifests(ctx)  # before the lease: the recount below then only lists
    with ctx.leases.sweep(on_wait) as refresh:
        targets = [ctx.get_version(model, v.version) for v in targets]  # re-read under the lease
        gone = tuple(_expired(v) for v in targets)
        mark_expired(ctx.store, gone, ctx.leases, refresh)  # then the refs: see leases.py
        try:
            _check_unreferenced(ctx, model, targets)
        except InvalidInputError:
            unmark_expired(ctx.store, gone)
            raise
        ctx.catalog.ensure_catalogs()
        mark_sweeping(ctx)
        ctx.catalog.models_catalog.expire(model, [e.version for e in gone])  # as GC: first
        freed = sum(expire_version(ctx.store, e) for e in gone)
        save_census(ctx)  # exact stats again (reads every live manifest, as a GC plan does)
    return Removed(model, gone, freed)


def _resolve(ctx: StoreContext, model: str, specs: Sequence[str]) -> list[Version]:
    out: dict[str, Version] = {}
    for spec in specs:
        if not isinstance(spec, str):
            raise InvalidInputError(f"a version to remove must be text, not {type(spec).__name__}")
        v = ctx.get_version(model, spec)
        out.setdefault(v.version, v)
    return list(out.values())


def _check_unreferenced(ctx: StoreContext, model: str, targets: Sequence[Version]) -> None:
    wanted = {v.version for v in targets}
    held: dict[str, list[str]] = {}
    for name, rec in ctx.refs.list(model).items():
        for t in rec.value.versions():  # type: ignore[union-attr]
            if t.version in wanted:
                held.setdefault(t.version, []).append(name)
    if held:
        which = "; ".join(
            f"v{ver} is the target of ref {', '.join(sorted(refs))}"
            for ver, refs in sorted(held.items())
        )
        raise InvalidInputError(
            f"refusing to remove {model}: {which}; move the ref first (casstore promote or "
            "rollback), nothing was removed"
        )


def _expired(v: Version) -> ExpiredVersion:
    return ExpiredVersion(v.model, v.version, v.id.hex(), v.tags)
