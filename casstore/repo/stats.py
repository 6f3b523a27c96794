"""Storage statistics: logical vs stored bytes, dedup ratio, chunk and version counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from casstore.repo.context import StoreContext
from casstore.repo.keys import CHUNKS, MANIFESTS


@dataclass
class Stats:
    models: int = 0
    versions: int = 0
    logical_bytes: int = 0
    stored_bytes: int = 0  # bytes of chunk objects in the store (or referenced, per model)
    chunks: int = 0
    per_model: dict[str, dict[str, int | float]] = field(default_factory=dict)

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
        }


def store_stats(ctx: StoreContext, model: str | None = None) -> Stats:
    """Stats of one model (from its manifests) or of the whole store (listing its objects)."""
    st = Stats()
    models = [model] if model is not None else ctx.catalog.models()
    all_chunks: dict[bytes, int] = {}
    for name in models:
        versions = ctx.versions(name)
        sizes: dict[bytes, int] = {}
        for v in versions:
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
    if model is None:
        for info in ctx.store.list(CHUNKS):
            st.chunks += 1
            st.stored_bytes += info.size
        st.stored_bytes += sum(i.size for i in ctx.store.list(MANIFESTS))
    else:
        st.chunks = len(all_chunks)
        st.stored_bytes = sum(all_chunks.values())
    return st
