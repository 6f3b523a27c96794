"""The catalog: reading which models and versions a store holds, and their live tags.

Version index entries (``models/<m>/versions/<semver>``) point at immutable manifests; tags are
marker objects beside them. Manifests are cached in memory by digest (they never change).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from casstore.digest import Digest
from casstore.errors import CorruptObjectError, NotFoundError
from casstore.repo.keys import (
    MODELS,
    check_name,
    manifest_key,
    tags_prefix,
    version_key,
    versions_prefix,
)
from casstore.repo.manifest import Manifest, decode
from casstore.repo.refs import RefStore, Target
from casstore.repo.versioning import parse_spec, semver_key
from casstore.store.base import ObjectStore


@dataclass(frozen=True)
class Version:
    """A stored version: its manifest, its id (manifest digest) and its live tags."""

    manifest: Manifest
    id: Digest
    tags: tuple[str, ...] = ()

    model = property(lambda self: self.manifest.model)
    version = property(lambda self: self.manifest.version)
    name = property(lambda self: self.manifest.name)
    created_at = property(lambda self: self.manifest.created_at)
    version_type = property(lambda self: self.manifest.version_type)
    metrics = property(lambda self: self.manifest.performance_metrics)
    params = property(lambda self: self.manifest.params)
    size_bytes = property(lambda self: self.manifest.size_bytes)

    @property
    def target(self) -> Target:
        return Target(version=self.version, manifest=self.id.hex())

    def to_dict(self, *, files: bool = False) -> dict[str, Any]:
        """The seed document's metadata schema (plus lineage and id)."""
        m = self.manifest
        d: dict[str, Any] = {
            "model_name": m.model,
            "version": f"v{m.version}_{m.created_at:%Y%m%d_%H%M%S}",
            "semver": m.version,
            "name": m.name,
            "id": self.id.hex(),
            "created_at": m.created_at.isoformat(),
            "created_by": m.created_by,
            "version_type": m.version_type,
            "performance_metrics": dict(m.performance_metrics),
            "training_data": m.training_data.model_dump(mode="json"),
            "change_log": m.change_log,
            "tags": list(self.tags),
            "dependencies": list(m.dependencies),
            "parent": m.parent,
            "params": dict(m.params),
            "lineage": m.lineage.model_dump(),
            "size_bytes": m.size_bytes,
            "hash": self.id.hex(),
            "file_count": len(m.files),
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
                for f in m.files
            ]
        return d


class Catalog:
    """Reads models, versions, manifests and tags from a store."""

    def __init__(
        self, store: ObjectStore, on_manifest: Callable[[Manifest], None] | None = None
    ) -> None:
        self.store = store
        self._manifests: dict[Digest, Manifest] = {}
        self._on_manifest = on_manifest

    def remember(self, digest: Digest, manifest: Manifest) -> None:
        self._manifests[digest] = manifest
        if self._on_manifest is not None:
            self._on_manifest(manifest)

    def models(self) -> list[str]:
        names = set()
        for info in self.store.list(MODELS):
            parts = info.key[len(MODELS) :].split("/")
            if len(parts) > 2 and parts[1] == "versions":
                names.add(parts[0])
        return sorted(names)

    def version_index(self, model: str) -> dict[str, Digest]:
        """semver -> manifest digest for every version of ``model``."""
        prefix = versions_prefix(model)
        keys = [i.key for i in self.store.list(prefix)]
        out = {}
        for key, raw in self.store.get_many(keys).items():
            try:
                out[key[len(prefix) :]] = Digest.parse(json.loads(raw)["manifest"])
            except (ValueError, KeyError, TypeError) as e:
                raise CorruptObjectError(f"version index entry {key} is unreadable") from e
        return out

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

    def _tags(self, model: str) -> dict[str, set[str]]:
        prefix = tags_prefix(model)
        out: dict[str, set[str]] = {}
        for info in self.store.list(prefix):
            tag, semver = info.key[len(prefix) :].split("/", 1)
            out.setdefault(semver, set()).add(tag)
        return out

    def versions(self, model: str) -> list[Version]:
        """Every version of ``model``, oldest semantic version first."""
        index = self.version_index(model)
        if not index:
            raise NotFoundError(f"unknown model {model!r}")
        missing = [d for d in index.values() if d not in self._manifests]
        raws = self.store.get_many([manifest_key(d) for d in missing]) if missing else {}
        for d in missing:
            self.remember(d, decode(raws[manifest_key(d)], d))
        tags = self._tags(model)
        return [
            Version(self._manifests[d], d, tuple(sorted(tags.get(s, ()))))
            for s, d in sorted(index.items(), key=lambda kv: semver_key(kv[0]))
        ]

    def get_version(
        self, model: str, spec: str, refs: RefStore, *, request_key: str | None = None
    ) -> Version:
        """A version by any form :func:`~casstore.repo.versioning.parse_spec` accepts."""
        check_name("model", model)
        s = parse_spec(model, spec)
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
            index = self.version_index(model)
            if not index:
                raise NotFoundError(f"unknown model {model!r}")
            semver = max(index, key=semver_key)
            digest = index[semver]
        else:
            assert s.semver is not None
            try:
                raw = self.store.get(version_key(model, s.semver))
            except NotFoundError:
                if not self.version_index(model):
                    raise NotFoundError(f"unknown model {model!r}") from None
                raise NotFoundError(f"model {model!r} has no version {spec!r}") from None
            semver, digest = s.semver, Digest.parse(json.loads(raw)["manifest"])
        m = self.manifest(digest)
        if m.model != model or m.version != semver:
            raise CorruptObjectError(f"index entry for {model} v{semver} names another version")
        if s.full_name is not None and m.name != s.full_name:
            raise NotFoundError(f"model {model!r} has no version {spec!r} (v{semver} is {m.name})")
        tags = tuple(sorted(t for t, vs in self._tag_map(model).items() if semver in vs))
        return Version(m, digest, tags)

    def _tag_map(self, model: str) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for semver, ts in self._tags(model).items():
            for t in ts:
                out.setdefault(t, set()).add(semver)
        return out
