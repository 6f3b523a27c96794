"""Storage statistics: logical vs stored bytes, dedup ratio, chunk and version counts, and the
bytes saved by dedup and by encoding, separately (:func:`casstore.repo.storage.savings`).

By default from counters: each model's catalog head counts its live versions and their
logical bytes, and the chunks its commits stored (decoded and as stored); ``catalog/gc``
counts what GC deleted; the ``catalog/format`` marker holds what a store held before it had
catalogs. That is one request per model. ``exact=True`` reads every manifest and lists every
object. (Counted savings are of what commits wrote; GC's deletions are not split by them.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from casstore.errors import NotFoundError
from casstore.repo.context import StoreContext
from casstore.repo.keys import MANIFESTS
from casstore.repo.storage import Savings, chunk_objects, savings


@dataclass
class Stats:
    models: int = 0
    versions: int = 0
    logical_bytes: int = 0
    stored_bytes: int = 0  # bytes of chunk objects in the store (or referenced, per model)
    chunks: int = 0
    per_model: dict[str, dict[str, int | float]] = field(default_factory=dict)
    savings: Savings = field(default_factory=Savings)  # dedup vs encoding, these versions
    exact: bool = True

    @property
    def dedup_ratio(self) -> float:
        return self.logical_bytes / self.stored_bytes if self.stored_bytes else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": self.models,
            "versions": self.versions,
            "logical_bytes": self.logical_bytes,
            "stored_bytes": self.stored_bytes,
            "chunks": self.chunks,
            "dedup_ratio": round(self.dedup_ratio, 4),
            "saved_bytes": max(0, self.logical_bytes - self.stored_bytes),
            "per_model": self.per_model,
            "unique_bytes": self.savings.unique_bytes,  # distinct chunks, decoded
            "encoded_bytes": self.savings.stored_bytes,  # those chunks as stored
            "saved_by_dedup": self.savings.saved_by_dedup,
            "saved_by_encoding": self.savings.saved_by_encoding,
            "exact": self.exact,
        }


def store_stats(ctx: StoreContext, model: str | None = None, *, exact: bool = False) -> Stats:
    """Stats of one model or of the whole store: from the counters (O(models) requests) or,
    with ``exact``, from every manifest and a listing of every object (chunk objects once,
    for the bytes saved by encoding)."""
    if not exact and ctx.catalog.migrated():
        return _counted(ctx, model)
    return _scanned(ctx, model)


def _counted(ctx: StoreContext, model: str | None) -> Stats:
    st = Stats(exact=False)
    cat = ctx.catalog.models_catalog
    names = [model] if model is not None else ctx.catalog.models()
    added = {"chunks": 0, "stored": 0, "unique": 0, "encoded": 0}
    for name in names:
        view = cat.read(name)
        if view is None:
            if model is not None:
                raise NotFoundError(f"unknown model {model!r}")
            continue  # a first commit that never published
        c = view.counters
        logical, unique = c.get("logical", 0), c.get("unique", 0)
        st.per_model[name] = {
            "versions": c.get("versions", 0),
            "logical_bytes": logical,
            "unique_bytes": unique,  # chunks this model's commits stored, decoded
            "chunks": c.get("chunks", 0),
            "dedup_ratio": round(logical / unique, 4) if unique else 1.0,
        }
        st.versions += c.get("versions", 0)
        st.logical_bytes += logical
        for k in added:
            added[k] += c.get(k, 0)
    st.models = len(names)
    st.savings = Savings(st.logical_bytes, added["unique"], added["encoded"])
    if model is None:
        base, gone = ctx.catalog.stats_base(), cat.deleted()
        st.chunks = max(0, base.get("chunks", 0) + added["chunks"] - gone["chunks"])
        st.stored_bytes = max(0, base.get("stored", 0) + added["stored"] - gone["stored"])
    else:
        st.chunks, st.stored_bytes = added["chunks"], added["encoded"]
    return st


def _scanned(ctx: StoreContext, model: str | None) -> Stats:
    st = Stats()
    models = [model] if model is not None else ctx.catalog.models()
    all_chunks: dict[bytes, int] = {}
    manifests = []
    for name in models:
        versions = ctx.versions(name)
        sizes: dict[bytes, int] = {}
        for v in versions:
            manifests.append(v.manifest)
            for f in v.manifest.files:
                sizes.update(f.chunks)
        logical = sum(v.size_bytes for v in versions)
        unique = sum(sizes.values())
        st.per_model[name] = {
            "versions": len(versions),
            "logical_bytes": logical,
            "unique_bytes": unique,
            "chunks": len(sizes),
            "dedup_ratio": round(logical / unique, 4) if unique else 1.0,
        }
        st.versions += len(versions)
        st.logical_bytes += logical
        all_chunks.update(sizes)
    st.models = len(models)
    listed = chunk_objects(ctx.store)
    st.savings = savings(ctx.store, manifests, listed)
    if model is None:
        st.chunks = len(listed)
        st.stored_bytes = sum(listed.values()) + sum(i.size for i in ctx.store.list(MANIFESTS))
    else:
        st.chunks = len(all_chunks)
        st.stored_bytes = st.savings.stored_bytes
    return st
