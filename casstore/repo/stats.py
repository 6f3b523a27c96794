"""Storage statistics: logical vs stored bytes, dedup ratio, chunk and version counts, and the
bytes saved by dedup and by encoding, separately (:func:`casstore.repo.storage.savings`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
        }


def store_stats(ctx: StoreContext, model: str | None = None) -> Stats:
    """Stats of one model (from its manifests) or of the whole store (listing its objects).

    Both list the chunk objects once, for the bytes saved by encoding."""
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
