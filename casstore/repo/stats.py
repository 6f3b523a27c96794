"""Storage statistics: logical vs stored bytes, chunk and version counts, and the bytes saved by
dedup and by encoding, for the whole store and per model, with one meaning for each figure.

What the figures mean (the same in the counted and the ``--exact`` view):

* store ``chunks``/``stored_bytes``: the chunk objects in the store, and their bytes plus the
  manifests' bytes: what the store occupies (chunks GC has not reclaimed yet included).
* ``used_chunks``/``unique_bytes``/``encoded_bytes``: the distinct chunk objects that live
  versions use (delta bases included), their decoded bytes, and their bytes as stored. A chunk
  two models share is counted once for the store. ``unreferenced_*``: objects no live version
  uses (what the next GC past its grace period reclaims, unless a commit reuses them).
* per model (a row of ``stats``, and ``stats MODEL``): the distinct chunk objects that model's
  live versions use, their decoded bytes (``unique_bytes``) and bytes as stored, plus its
  manifests. A chunk two models share counts in *both* rows, so the rows may add up to more
  than the store's ``used_chunks``. This is what copying that model alone to an empty store
  (``casstore push``) transfers, and what ``stats MODEL --exact`` recounts from its manifests.

Counted (the default, O(models) requests): GC and ``rm`` (under the sweep lease, when no
commit is in flight) recount everything exactly and save the result in ``catalog/stats``
together with each model's commit counters at that moment (:func:`save_census`). Commits add
to their model's counters in the catalog head what they did: chunk objects they created (exact)
and chunk objects new to the model, i.e. not used by the versions they derive from (parent and
newest). Counted = the last census + what commits added since. Where that can differ from an
exact count, :attr:`Stats.approximate` says so and by how much at most:

* ``found``: chunks a commit (or transfer) found already stored but not in the versions it
  derives from are counted as new to its model (wrong when an older version of the same model
  uses them) and not to the store line (wrong when they were awaiting GC, or were staged by
  the ranks of a distributed checkpoint); the stored size of those it did not look up (delta
  bases, staged chunks, chunks a transfer took as present) is taken as their size;
* ``sweep``: a GC or rm sweep started and did not save its census (running, or killed): what
  it deleted is still counted until a sweep finishes;
* ``rebuilt``: a model's catalog head was rebuilt since the census, so its commit counters
  restarted; its commits since are not counted;
* ``legacy``: the store has no census yet (no GC by this release), or objects from before
  catalogs, or commits by an earlier release.
A sweep (``gc``), ``rm`` or ``stats --recount`` makes the counters exact again. Not seen by
any counter: chunk objects of a commit killed before it finished (unreferenced; the next count
finds them).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from casstore.digest import Digest
from casstore.errors import NotFoundError
from casstore.repo.context import StoreContext
from casstore.repo.keys import CATALOG_STATS, MANIFESTS, digest_from_manifest_key
from casstore.repo.manifest import Manifest
from casstore.repo.storage import Savings, chunk_objects

STORE_KEYS = ("chunks", "stored", "unique", "encoded")
"""Commit counters of what commits created in the store: chunk objects, their bytes plus the
manifest's, their decoded bytes, their bytes (again, as the used chunks' encoded bytes)."""
MODEL_KEYS = ("ref_chunks", "ref_unique", "ref_encoded", "ref_manifests", "found_chunks",
              "found_unique")
"""Commit counters of what commits added to their model's usage (``found_*``: the part of it
found already stored, which may be shared or reused; see the module docstring)."""
CENSUS_FORMAT = 1


@dataclass
class Usage:
    """Chunk objects a set of versions uses, and their manifests."""

    chunks: int = 0  # distinct chunk objects present in the store (delta bases included)
    unique: int = 0  # their decoded bytes
    encoded: int = 0  # their bytes as stored
    manifests: int = 0  # bytes of the versions' manifests

    @property
    def stored(self) -> int:
        return self.encoded + self.manifests

    def add(self, other: Usage) -> Usage:
        return Usage(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


def astuple(u: Usage) -> tuple[int, int, int, int]:
    return (u.chunks, u.unique, u.encoded, u.manifests)


@dataclass
class Stats:
    models: int = 0
    versions: int = 0
    logical_bytes: int = 0
    stored_bytes: int = 0  # store: chunk objects + manifests; one model: what it uses
    chunks: int = 0  # store: chunk objects in the store; one model: those it uses
    per_model: dict[str, dict[str, int | float]] = field(default_factory=dict)
    savings: Savings = field(default_factory=Savings)  # dedup vs encoding, live versions
    used_chunks: int = 0  # distinct chunk objects live versions use (each once)
    unreferenced_chunks: int = 0  # chunk objects no live version uses (store only)
    unreferenced_bytes: int = 0
    exact: bool = True  # counted by a scan just now
    counted_at: float | None = None  # counted: when the census the counters start from ran
    approximate: list[dict[str, Any]] = field(default_factory=list)  # why counted may be off

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
            "used_chunks": self.used_chunks,
            "unreferenced_chunks": self.unreferenced_chunks,
            "unreferenced_bytes": self.unreferenced_bytes,
            "dedup_ratio": round(self.dedup_ratio, 4),
            "saved_bytes": max(0, self.logical_bytes - self.stored_bytes),
            "per_model": self.per_model,
            "unique_bytes": self.savings.unique_bytes,  # used chunks, decoded
            "encoded_bytes": self.savings.stored_bytes,  # used chunks, as stored
            "saved_by_dedup": self.savings.saved_by_dedup,
            "saved_by_encoding": self.savings.saved_by_encoding,
            "exact": self.exact,
            "counted_at": self.counted_at,
            "approximate": self.approximate,
        }


# -- the census: an exact count, saved as the base of the counters ----------------------------
@dataclass
class ModelCensus:
    versions: int
    logical: int
    usage: Usage
    seen: dict[str, int]  # the model's commit counters when it was counted


@dataclass
class Census:
    at: float
    chunks: int  # chunk objects in the store
    chunk_bytes: int
    manifest_bytes: int  # every manifest object (orphans too)
    used: Usage  # what live versions use, each chunk once
    models: dict[str, ModelCensus]
    sweeping: float | None = None  # a sweep started at this time and has not saved a census

    @property
    def stored(self) -> int:
        return self.chunk_bytes + self.manifest_bytes

    def encode(self) -> bytes:
        return json.dumps({"format": CENSUS_FORMAT, **asdict(self)}, sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Census | None:
        """None if unreadable (the counters then fall back as for a store without one)."""
        try:
            d = json.loads(raw)
            if d.pop("format") != CENSUS_FORMAT:
                return None
            models = {str(m): ModelCensus(int(c["versions"]), int(c["logical"]),
                                          Usage(**_ints(c["usage"])), _ints(c["seen"]))
                      for m, c in d["models"].items()}
            sweeping = d.get("sweeping")
            return cls(float(d["at"]), int(d["chunks"]), int(d["chunk_bytes"]),
                       int(d["manifest_bytes"]), Usage(**_ints(d["used"])), models,
                       None if sweeping is None else float(sweeping))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


def _ints(d: Mapping[str, Any]) -> dict[str, int]:
    return {str(k): int(v) for k, v in d.items()}


def usage_of(manifests: Iterable[tuple[Digest, Manifest]], listed: Mapping[Digest, int],
             manifest_sizes: Mapping[Digest, int]) -> tuple[Usage, dict[Digest, int]]:
    """What ``manifests`` use (each chunk object once; only objects ``listed`` in the store),
    and their chunk objects -> decoded size."""
    objects: dict[Digest, int] = {}
    u = Usage()
    for d, m in manifests:
        objects.update(m.object_sizes())
        u.manifests += manifest_sizes.get(d, 0)
    objects = {d: n for d, n in objects.items() if d in listed}
    u.chunks, u.unique = len(objects), sum(objects.values())
    u.encoded = sum(listed[d] for d in objects)
    return u, objects


def take_census(ctx: StoreContext, models: Iterable[str] | None = None) -> Census:
    """Count exactly: one listing of chunks and of manifests, every live manifest (batched).
    ``models`` limits the per-model part (the store totals always cover every model)."""
    store = ctx.store
    listed = chunk_objects(store)
    manifest_sizes = {d: i.size for i in store.list(MANIFESTS)
                      if (d := digest_from_manifest_key(i.key)) is not None}
    every = ctx.catalog.all_models()
    wanted = set(every if models is None else models)
    used: dict[Digest, int] = {}
    used_manifests = 0
    out: dict[str, ModelCensus] = {}
    for name in every:
        view = ctx.catalog.models_catalog.read(name)
        if view is None:
            continue
        entries = view.entries()
        ids = [e.summary.id for e in entries]
        found = ctx.catalog.manifests(ids)
        u, objects = usage_of(((d, found[d]) for d in ids if d in found), listed,
                              manifest_sizes)
        used.update(objects)
        used_manifests += u.manifests
        if name in wanted:
            seen = {k: v for k, v in view.head.counters.items() if k in STORE_KEYS + MODEL_KEYS}
            out[name] = ModelCensus(len(entries), sum(e.summary.size_bytes for e in entries),
                                    u, seen)
    total = Usage(len(used), sum(used.values()), sum(listed[d] for d in used), used_manifests)
    return Census(time.time(), len(listed), sum(listed.values()), sum(manifest_sizes.values()),
                  total, out)


def prefetch_manifests(ctx: StoreContext) -> None:
    """Read every live manifest into the catalog's cache (manifests are immutable), so that a
    census taken next, under the sweep lease, holds writers off only for the listings."""
    for name in ctx.catalog.all_models():
        view = ctx.catalog.models_catalog.read(name)
        if view is not None:
            ctx.catalog.manifests([e.summary.id for e in view.entries()])


def read_census(ctx: StoreContext) -> tuple[Census | None, float | None]:
    """The saved census (None: none yet, or unreadable) and when a sweep that has not saved
    its own census started (None: no such sweep)."""
    try:
        raw = ctx.store.get(CATALOG_STATS)
    except NotFoundError:
        return None, None
    census = Census.decode(raw)
    if census is not None:
        return census, census.sweeping
    try:
        return None, float(json.loads(raw)["sweeping"])
    except (ValueError, KeyError, TypeError):
        return None, None


def mark_sweeping(ctx: StoreContext) -> None:
    """Before a sweep deletes anything: the saved census no longer holds until it finishes.
    Only the holder of the sweep lease writes ``catalog/stats``."""
    census, _ = read_census(ctx)
    if census is None:
        raw = json.dumps({"format": CENSUS_FORMAT, "sweeping": time.time()}).encode()
    else:
        census.sweeping = time.time()
        raw = census.encode()
    ctx.store.put(CATALOG_STATS, raw)


def save_census(ctx: StoreContext) -> Census:
    """Count exactly and save the count as the base of the counters. The caller holds the
    sweep lease, with in-flight writers drained: no commit adds to a counter meanwhile."""
    census = take_census(ctx)
    ctx.store.put(CATALOG_STATS, census.encode())
    return census


# -- stats ------------------------------------------------------------------------------------
def store_stats(ctx: StoreContext, model: str | None = None, *, exact: bool = False) -> Stats:
    """Stats of one model or of the whole store: from the counters (O(models) requests) or,
    with ``exact``, by a census (one listing of chunks and of manifests, every manifest)."""
    if not exact and ctx.catalog.migrated():
        return _counted(ctx, model)
    return _scanned(ctx, model)


def _scanned(ctx: StoreContext, model: str | None) -> Stats:
    if model is not None and ctx.catalog.models_catalog.read(model) is None:
        raise NotFoundError(f"unknown model {model!r}")
    census = take_census(ctx, None if model is None else [model])
    st = Stats(exact=True)
    for name, c in census.models.items():
        st.per_model[name] = _row(c.versions, c.logical, c.usage)
    _fill(st, census.chunks, census.stored, census.used, model)
    return st


def _counted(ctx: StoreContext, model: str | None) -> Stats:
    cat = ctx.catalog.models_catalog
    census, sweeping = read_census(ctx)
    st = Stats(exact=False, counted_at=None if census is None else census.at)
    names = [model] if model is not None else ctx.catalog.models()
    created = dict.fromkeys(STORE_KEYS, 0)
    found = {"chunks": 0, "bytes": 0, "models": []}
    rebuilt, older = [], []
    for name in names:
        view = cat.read(name)
        if view is None:
            if model is not None:
                raise NotFoundError(f"unknown model {model!r}")
            continue  # a first commit that never published
        c = view.counters
        base = census.models.get(name) if census is not None else None
        seen = base.seen if base is not None else {}
        delta = {k: c.get(k, 0) - seen.get(k, 0) for k in STORE_KEYS + MODEL_KEYS}
        if any(n < 0 for n in delta.values()):
            rebuilt.append(name)  # the head's counters restarted: commits since are lost
            delta = {k: max(0, n) for k, n in delta.items()}
        if census is None and c.get("chunks", 0) and "ref_chunks" not in c:
            older.append(name)
        usage = Usage(delta["ref_chunks"], delta["ref_unique"], delta["ref_encoded"],
                      delta["ref_manifests"])
        if base is not None:
            usage = base.usage.add(usage)
        st.per_model[name] = _row(c.get("versions", 0), c.get("logical", 0), usage)
        for k in STORE_KEYS:
            created[k] += delta[k]
        if delta["found_chunks"]:
            found["chunks"] += delta["found_chunks"]
            found["bytes"] += delta["found_unique"]
            found["models"].append(name)
    new = Usage(created["chunks"], created["unique"], created["encoded"],
                created["stored"] - created["encoded"])
    if census is not None:
        chunks, stored = census.chunks + new.chunks, census.stored + new.stored
        used = census.used.add(new)
    else:
        base, gone = ctx.catalog.stats_base(), cat.deleted()
        chunks = max(0, base.get("chunks", 0) + new.chunks - gone["chunks"])
        stored = max(0, base.get("stored", 0) + new.stored - gone["stored"])
        used = new
        if base.get("chunks", 0) or gone["chunks"] or older:
            st.approximate.append({"kind": "legacy", "chunks": base.get("chunks", 0),
                                   "deleted_chunks": gone["chunks"], "models": older})
    if sweeping is not None:
        st.approximate.append({"kind": "sweep", "since": sweeping})
    if found["chunks"]:
        st.approximate.append({"kind": "found", **found})
    if rebuilt:
        st.approximate.append({"kind": "rebuilt", "models": rebuilt})
    _fill(st, chunks, stored, used, model)
    return st


def _row(versions: int, logical: int, u: Usage) -> dict[str, int | float]:
    return {
        "versions": versions,
        "logical_bytes": logical,
        "chunks": u.chunks,  # distinct chunk objects this model's versions use
        "unique_bytes": u.unique,  # their decoded bytes
        "encoded_bytes": u.encoded,  # their bytes as stored
        "stored_bytes": u.stored,  # those + the model's manifests
        "dedup_ratio": round(logical / u.unique, 4) if u.unique else 1.0,
    }


def _fill(st: Stats, chunks: int, stored: int, used: Usage, model: str | None) -> None:
    rows = st.per_model.values()
    st.models = len(st.per_model)
    st.versions = sum(int(r["versions"]) for r in rows)
    st.logical_bytes = sum(int(r["logical_bytes"]) for r in rows)
    if model is not None:  # one model: every figure is of what it uses
        r = st.per_model[model]
        used = Usage(int(r["chunks"]), int(r["unique_bytes"]), int(r["encoded_bytes"]),
                     int(r["stored_bytes"]) - int(r["encoded_bytes"]))
        chunks, stored = used.chunks, used.stored
    else:
        st.unreferenced_chunks = max(0, chunks - used.chunks)
        st.unreferenced_bytes = max(0, stored - used.stored)
    st.chunks, st.stored_bytes, st.used_chunks = chunks, stored, used.chunks
    st.savings = Savings(st.logical_bytes, used.unique, used.encoded)


def recount(ctx: StoreContext, on_wait: Callable[[int], None] | None = None) -> Census:
    """Count exactly and save the count as the counters' new base (``stats --recount``):
    takes the sweep lease (waits for in-flight commits; holds new ones off meanwhile)."""
    ctx.catalog.ensure_catalogs()
    with ctx.leases.sweep(on_wait):
        return save_census(ctx)
