"""The catalog: reading which models and versions a store holds, and their live tags.

Version index entries (``models/<m>/versions/<semver>``) point at immutable manifests and
publish versions; tags are marker objects beside them. Listings (versions, latest, tags) come
from each model's catalog of summaries (:mod:`casstore.repo.model_catalog`), a cache rebuilt
from the manifests when missing or damaged. Manifests are cached in memory by digest.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from casstore.digest import Digest
from casstore.errors import CorruptObjectError, NotFoundError
from casstore.repo.keys import (
    CATALOG_FORMAT,
    CHUNKS,
    MANIFESTS,
    MODELS,
    check_name,
    manifest_key,
    version_key,
)
from casstore.repo.manifest import Manifest, decode
from casstore.repo.model_catalog import Entry, ModelCatalog, View, index_digest
from casstore.repo.refs import RefStore, Target
from casstore.repo.summary import Summary, summarize
from casstore.repo.versioning import parse_spec
from casstore.store.base import ObjectStore, together


class Version:
    """A stored version: its summary, its id (manifest digest) and its live tags.

    Listings build versions from catalog summaries; the manifest (files, chunks) is read
    the first time :attr:`manifest` is asked for, then kept."""

    __slots__ = ("_loader", "_manifest", "summary", "tags")

    def __init__(
        self,
        summary: Summary,
        tags: tuple[str, ...] = (),
        manifest: Manifest | None = None,
        loader: Callable[[Digest], Manifest] | None = None,
    ) -> None:
        self.summary = summary
        self.tags = tuple(tags)
        self._manifest = manifest
        self._loader = loader

    @classmethod
    def of(cls, manifest: Manifest, digest: Digest, tags: tuple[str, ...] = ()) -> Version:
        return cls(summarize(manifest, digest), tags, manifest)

    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            if self._loader is None:
                raise NotFoundError(f"manifest of {self.name} is not available")
            self._manifest = self._loader(self.id)
        return self._manifest

    id = property(lambda self: self.summary.id)
    model = property(lambda self: self.summary.model)
    version = property(lambda self: self.summary.version)
    name = property(lambda self: self.summary.name)
    created_at = property(lambda self: self.summary.created_at)
    version_type = property(lambda self: self.summary.version_type)
    metrics = property(lambda self: self.summary.metrics)
    params = property(lambda self: self.summary.params)
    size_bytes = property(lambda self: self.summary.size_bytes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return (self.summary.manifest, self.tags) == (other.summary.manifest, other.tags)

    def __hash__(self) -> int:
        return hash((self.summary.manifest, self.tags))

    def __repr__(self) -> str:
        return f"Version({self.name!r}, tags={self.tags!r})"

    @property
    def target(self) -> Target:
        return Target(version=self.version, manifest=self.summary.manifest)

    def to_dict(self, *, files: bool = False) -> dict[str, Any]:
        """The seed document's metadata schema (plus lineage and id)."""
        s = self.summary
        d: dict[str, Any] = {
            "model_name": s.model,
            "version": f"v{s.version}_{s.created_at:%Y%m%d_%H%M%S}",
            "semver": s.version,
            "name": s.name,
            "id": s.manifest,
            "created_at": s.created_at.isoformat(),
            "created_by": s.created_by,
            "version_type": s.version_type,
            "performance_metrics": dict(s.metrics),
            "training_data": dict(s.training_data),
            "change_log": s.change_log,
            "tags": list(self.tags),
            "dependencies": list(s.dependencies),
            "parent": s.parent,
            "params": dict(s.params),
            "lineage": dict(s.lineage),
            "size_bytes": s.size_bytes,
            "hash": s.manifest,
            "file_count": s.file_count,
        }
        if files:
            d["files"] = [
                {
                    "path": f.path,
                    "size": f.size,
                    "format": f.format,
                    "chunks": len(f.chunks),
                    "tensors": len(f.tensors),
                    "chunker": f.chunker,
                }
                for f in self.manifest.files
            ]
        return d


class Catalog:
    """Reads models, versions, manifests and tags: listings from the per-model catalogs
    (:mod:`casstore.repo.model_catalog`), single versions from their index entries."""

    def __init__(
        self, store: ObjectStore, on_manifest: Callable[[Manifest], None] | None = None
    ) -> None:
        self.store = store
        self._manifests: dict[Digest, Manifest] = {}
        self._on_manifest = on_manifest
        self.models_catalog = ModelCatalog(store, self.manifests)
        self._migrated = False
        self._base: dict[str, int] | None = None  # the format marker's stats base, once read

    def remember(self, digest: Digest, manifest: Manifest) -> None:
        self._manifests[digest] = manifest
        if self._on_manifest is not None:
            self._on_manifest(manifest)

    # -- models ----------------------------------------------------------------------------
    def models(self) -> list[str]:
        """Model names: one listing of the catalog heads (a store from before catalogs, not
        yet written by this release: a listing of every model key)."""
        if self.migrated():
            return self.models_catalog.model_names()
        return self._legacy_models()

    def all_models(self) -> list[str]:
        """Every model with a catalog head or an index entry: a model whose head was lost is
        still a model (GC, verify and exact stats must not take its objects for garbage).
        Lists every key under ``models/``: for operations that read everything anyway."""
        return sorted(set(self.models()) | set(self._legacy_models()))

    def _legacy_models(self) -> list[str]:
        names = set()
        for info in self.store.list(MODELS):
            parts = info.key[len(MODELS) :].split("/")
            if len(parts) > 2 and parts[1] == "versions":
                names.add(parts[0])
        return sorted(names)

    def migrated(self) -> bool:
        if not self._migrated:
            try:  # read, not just checked: stats needs its base (same one request)
                self._base = _base(self.store.get(CATALOG_FORMAT))
                self._migrated = True
            except NotFoundError:
                pass
        return self._migrated

    def ensure_catalogs(self) -> None:
        """Build every model's catalog once in a store from before catalogs (its first write
        by this release; one request on every later write). The marker records the chunks
        and bytes already stored, the base of the stats counters."""
        if self.migrated():
            return
        models = self._legacy_models()
        for model in models:
            self.models_catalog.store_rebuilt(model)
        base = {"chunks": 0, "stored": 0}
        if models:  # objects from before: counted once, exactly
            for prefix in (CHUNKS, MANIFESTS):
                for info in self.store.list(prefix):
                    base["chunks"] += prefix == CHUNKS
                    base["stored"] += info.size
        self.store.put_if_absent(CATALOG_FORMAT, json.dumps({"format": 1, **base}).encode())
        self._migrated = True

    def stats_base(self) -> dict[str, int]:
        """Chunks and bytes stored before the store had catalogs (counted once, at migration)."""
        if self._base is None:
            try:
                self._base = _base(self.store.get(CATALOG_FORMAT))
            except NotFoundError:
                return {}
        return self._base

    # -- manifests -------------------------------------------------------------------------
    def manifest(self, digest: Digest) -> Manifest:
        m = self._manifests.get(digest)
        if m is None:
            try:
                raw = self.store.get(manifest_key(digest))
            except NotFoundError:
                raise NotFoundError(f"manifest {digest.short()} is missing") from None
            m = decode(raw, digest)
            self.remember(digest, m)
        return m

    def manifests(self, digests: list[Digest]) -> dict[Digest, Manifest]:
        """The manifests among ``digests`` that exist and decode (batched reads)."""
        missing = [d for d in digests if d not in self._manifests]
        raws = self.store.get_found([manifest_key(d) for d in missing])
        for d in missing:
            raw = raws.get(manifest_key(d))
            if raw is None:
                continue
            try:
                self.remember(d, decode(raw, d))
            except CorruptObjectError:
                continue
        return {d: self._manifests[d] for d in digests if d in self._manifests}

    def load(self, versions: Iterable[Version]) -> None:
        """Read the manifests of ``versions`` not loaded yet in one batch (versions listed
        by another catalog of the same store too); a missing one stays unloaded."""
        todo = [v for v in versions if v._manifest is None]
        for i in range(0, len(todo), 256):  # raw bytes of a group held at once, not of all
            group = todo[i : i + 256]
            found = self.manifests([v.id for v in group])
            for v in group:
                v._manifest = found.get(v.id)

    # -- versions --------------------------------------------------------------------------
    def version_index(self, model: str) -> dict[str, Digest]:
        """semver -> manifest digest of every index entry: the source of truth, O(versions)
        requests (verify and repair use it; everyday commands use the catalog)."""
        return self.models_catalog.index(model)

    def has_versions(self, model: str) -> bool:
        """Whether ``model`` has a version (its catalog head; O(1) requests)."""
        view = self.models_catalog.read(check_name("model", model))
        return view is not None and bool(view.newest(1))

    def view(self, model: str) -> View:
        view = self.models_catalog.read(check_name("model", model))
        if view is None:
            raise NotFoundError(f"unknown model {model!r}")
        return view

    def _version(self, e: Entry) -> Version:
        return Version(e.summary, e.tags, self._manifests.get(e.summary.id), self.manifest)

    def versions(self, model: str) -> list[Version]:
        """Every version of ``model``, oldest semantic version first (from its catalog)."""
        entries = self.view(model).entries()
        if not entries:
            raise NotFoundError(f"unknown model {model!r}")
        return [self._version(e) for e in entries]

    def newest(self, model: str, limit: int | None = None) -> list[Version]:
        """The newest ``limit`` versions (all with None), highest semantic version first."""
        return [self._version(e) for e in self.view(model).newest(limit)]

    def get_version(
        self, model: str, spec: str, refs: RefStore, *, request_key: str | None = None
    ) -> Version:
        """A version by any form :func:`~casstore.repo.versioning.parse_spec` accepts."""
        check_name("model", model)
        s = parse_spec(model, spec)
        view: View | None = None
        if s.ref is not None:
            try:
                target = refs.resolve(model, s.ref, request_key)
            except NotFoundError as e:
                if not s.bare_ref:
                    raise
                raise NotFoundError(
                    f"{e}; {spec!r} was read as a ref name (versions look like 1.2.0, v1.2.0 "
                    "or the full name)"
                ) from None
            semver, digest = target.version, Digest.parse(target.manifest)
        elif s.latest:
            view = self.view(model)
            top = view.newest(1)
            if not top:
                raise NotFoundError(f"unknown model {model!r}")
            semver, digest = top[0].summary.version, top[0].summary.id
        else:
            assert s.semver is not None
            key = version_key(model, s.semver)

            def indexed() -> bytes | None:
                try:
                    return self.store.get(key)
                except NotFoundError:
                    return None

            # the index entry and the catalog (for the tags) are asked for together
            raw, view = together(self.store, indexed, lambda: self.models_catalog.read(model))
            if raw is None:
                if view is None:
                    raise NotFoundError(f"unknown model {model!r}")
                raise NotFoundError(f"model {model!r} has no version {spec!r}")
            semver, digest = s.semver, index_digest(raw, model, s.semver)
        if s.ref is not None:  # a ref's version: its manifest and the catalog together
            m, view = together(self.store, lambda: self.manifest(digest),
                               lambda: self.models_catalog.read(model))
        else:
            m = self.manifest(digest)
        if m.model != model or m.version != semver:
            raise CorruptObjectError(f"index entry for {model} v{semver} names another version")
        if s.full_name is not None and m.name != s.full_name:
            raise NotFoundError(f"model {model!r} has no version {spec!r} (v{semver} is {m.name})")
        entry = view.get(semver) if view is not None else None
        tags = entry.tags if entry is not None else tuple(sorted(m.tags))
        return Version.of(m, digest, tags)


def parse_index_entry(key: str, raw: bytes) -> Digest:
    """The manifest digest a version index entry names; CorruptObjectError if it names none."""
    try:
        return Digest.parse(json.loads(raw)["manifest"])
    except (ValueError, KeyError, TypeError) as e:  # InvalidInputError is a ValueError
        raise CorruptObjectError(f"version index entry {key} is unreadable ({e})") from None


def _base(raw: bytes) -> dict[str, int]:
    try:
        data = json.loads(raw)
        return {k: v for k, v in data.items() if isinstance(v, int) and k != "format"}
    except (ValueError, AttributeError):
        return {}
