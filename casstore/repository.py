"""The Repository facade: commit, read, inspect, tag and move refs of model versions.

Write order is always chunks -> manifest -> version index entry -> tags -> ref, so a reader
that follows a ref (or lists versions) never reaches something that is not fully stored.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from casstore.chunking import Chunker, ReadAt, detect_layout, get_chunker
from casstore.digest import Digest
from casstore.errors import (
    AlreadyExistsError,
    InvalidInputError,
    NotFoundError,
)
from casstore.ops.rollout import Notifier, RefOperations
from casstore.repo.catalog import Catalog, Version
from casstore.repo.chunks import ChunkReader, ChunkWriter, Progress
from casstore.repo.compare import Comparison, compare
from casstore.repo.config import StoreConfig, load_config, save_config
from casstore.repo.files import VersionFile, checkout_file
from casstore.repo.inputs import FileSource, collect
from casstore.repo.keys import (
    CHUNKS,
    MANIFESTS,
    check_name,
    chunk_key,
    manifest_key,
    tag_key,
    version_key,
)
from casstore.repo.leases import Leases, Session
from casstore.repo.manifest import (
    FileEntry,
    Manifest,
    TensorEntry,
    TrainingData,
    VersionType,
    encode,
    version_name,
)
from casstore.repo.query import Query
from casstore.repo.refs import RefStore, RefValue, default_actor
from casstore.repo.versioning import Bump, bump, parse_spec, semver_key
from casstore.store import ObjectStore, open_store, probe_conditional_writes

Source = tuple[str, int, ReadAt] | tuple[str, int, ReadAt, ReadAt]
"""A file to commit: (path in the version, size, read_at[, view_at]) -- see commit_sources."""


@dataclass
class CommitResult:
    version: Version
    logical_bytes: int
    new_bytes: int
    chunks: int
    new_chunks: int
    seconds: float
    ref_moved: str | None = None

    def to_dict(self) -> dict[str, Any]:
        v = self.version
        return {
            "model": v.model,
            "version": v.version,
            "name": v.name,
            "id": v.id.hex(),
            "logical_bytes": self.logical_bytes,
            "new_bytes": self.new_bytes,
            "chunks": self.chunks,
            "new_chunks": self.new_chunks,
            "seconds": round(self.seconds, 4),
            "ref": self.ref_moved,
        }


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


class Repository(RefOperations):
    """casstore's Python API over one store (a local folder, s3://..., any fsspec URL)."""

    def __init__(self, store: ObjectStore | str | os.PathLike[str], **storage_options: Any):
        self.store = (
            store if isinstance(store, ObjectStore) else open_store(store, **storage_options)
        )
        self._config: StoreConfig | None = load_config(self.store)
        self.chunks = ChunkReader(self.store)
        self.catalog = Catalog(self.store, on_manifest=self.chunks.remember_inline)
        self.leases = Leases(self.store)
        self._local = threading.local()
        self.notifiers: list[Notifier] = []
        cmd = os.environ.get("CASSTORE_NOTIFY")
        self.notify_commands: list[str] = [cmd] if cmd else []

    @contextmanager
    def _writing(self, kind: str) -> Iterator[Session]:
        """Hold a write session (re-entrant per thread) so GC never sweeps under a writer."""
        current = getattr(self._local, "session", None)
        if current is not None:
            yield current
            return
        with self.leases.session(kind) as s:
            self._local.session = s
            try:
                yield s
            finally:
                self._local.session = None

    def on_ref_move(self, fn: Notifier) -> None:
        """Call ``fn(event)`` after every ref move (the event is a JSON-able dict)."""
        self.notifiers.append(fn)

    # -- store config --------------------------------------------------------------------
    @property
    def config(self) -> StoreConfig:
        return self._config or StoreConfig()

    @property
    def exists(self) -> bool:
        return self._config is not None

    def init(self, config: StoreConfig | None = None) -> StoreConfig:
        """Create the store's config if absent; returns the config in force.

        Probes once whether the backend really honours conditional writes (some S3-compatible
        servers ignore preconditions) and records the answer: refs then refuse concurrent
        writers on a backend that failed, unless the store is declared single-writer.
        """
        cfg = config or StoreConfig()
        if cfg.conditional_writes is None:
            ok = self.store.capabilities.conditional_replace and probe_conditional_writes(
                self.store
            )
            cfg = cfg.model_copy(update={"conditional_writes": ok})
        self._config = save_config(self.store, cfg)
        return self._config

    @property
    def refs(self) -> RefStore:
        cfg = self.config
        return RefStore(
            self.store,
            single_writer=cfg.single_writer,
            conditional=cfg.conditional_writes is not False,
        )

    # -- commit --------------------------------------------------------------------------
    def commit(
        self,
        model: str,
        paths: Sequence[str | os.PathLike[str]],
        *,
        version: str | None = None,
        bump_part: Bump = "patch",
        version_type: VersionType = "release",
        metrics: dict[str, float] | None = None,
        training_data: dict[str, Any] | TrainingData | None = None,
        change_log: str = "",
        tags: Iterable[str] = (),
        dependencies: Iterable[str] = (),
        parent: str | None = None,
        created_by: str | None = None,
        ref: str | None = None,
        reason: str = "",
        chunker: str | None = None,
        progress: Progress | None = None,
        extra: dict[str, Any] | None = None,
    ) -> CommitResult:
        """Store files/folders as a new version of ``model``.

        The version is ``version`` if given (must be new), else the latest bumped by
        ``bump_part``. The first version of a model sets ``current``; ``ref`` moves that ref to
        the new version as part of the commit.
        """
        check_name("model", model)
        tags = tuple(check_name("tag", t) for t in tags)
        if ref is not None:
            check_name("ref", ref)
        files = collect(paths)
        sources = [(rel, FileSource(p)) for rel, p in files]
        try:
            return self.commit_sources(
                model,
                [(rel, s.size, s.read_at, s.view_at) for rel, s in sources],
                version=version,
                bump_part=bump_part,
                version_type=version_type,
                metrics=metrics,
                training_data=training_data,
                change_log=change_log,
                tags=tags,
                dependencies=dependencies,
                parent=parent,
                created_by=created_by,
                ref=ref,
                reason=reason,
                chunker=chunker,
                progress=progress,
                extra=extra,
            )
        finally:
            for _, s in sources:
                s.close()

    def commit_sources(
        self,
        model: str,
        sources: Sequence[Source],
        *,
        version: str | None = None,
        bump_part: Bump = "patch",
        version_type: VersionType = "release",
        metrics: dict[str, float] | None = None,
        training_data: dict[str, Any] | TrainingData | None = None,
        change_log: str = "",
        tags: Iterable[str] = (),
        dependencies: Iterable[str] = (),
        parent: str | None = None,
        created_by: str | None = None,
        ref: str | None = None,
        reason: str = "",
        chunker: str | None = None,
        progress: Progress | None = None,
        extra: dict[str, Any] | None = None,
        prechunked: Sequence[FileEntry] = (),
    ) -> CommitResult:
        """Commit in-memory or virtual files: ``(relative path, size, read_at(offset, n))``.

        ``read_at`` must return exactly ``n`` bytes; it is called from one thread at a time
        per source, with bounded read sizes. Same options and guarantees as :meth:`commit`.
        ``prechunked`` adds files whose chunks some other writer already stored (e.g. the
        ranks of a distributed checkpoint); their presence is checked inside this commit's
        write session, so GC cannot sweep them between the check and the publish.
        """
        check_name("model", model)
        tags = tuple(check_name("tag", t) for t in tags)
        if ref is not None:
            check_name("ref", ref)
        if not sources and not prechunked:
            raise InvalidInputError("nothing to commit")
        self.refs.check_writable()  # a commit may move a ref: refuse before storing anything
        from casstore.repo.manifest import check_relpath

        seen = set()
        for rel in [s[0] for s in sources] + [e.path for e in prechunked]:
            check_relpath(rel)
            if rel in seen:
                raise InvalidInputError(f"duplicate path {rel!r}")
            seen.add(rel)
        import time

        t0 = time.perf_counter()
        existing = self.catalog.version_index(model)
        if version is not None:
            version = parse_spec(model, version).semver or ""
            if not version:
                raise InvalidInputError("an explicit version must be MAJOR.MINOR.PATCH")
            if version in existing:
                raise AlreadyExistsError(f"{model} v{version} already exists")
        chunk_impl: Chunker = get_chunker(chunker or self.config.chunker)
        for rel, size, read_at, *_ in sources:  # refuse hostile files before storing anything
            detect_layout(read_at, size, rel)
        with self._writing("commit") as session:
            parent_v = self._default_parent(model, existing) if parent is None else parent
            parent_version = self.get_version(model, parent_v) if parent_v else None
            td = (
                training_data
                if isinstance(training_data, TrainingData)
                else TrainingData(**(training_data or {}))
            )
            if self._config is None:
                self.init()
            known = parent_version.manifest.chunk_set() if parent_version else set()
            writer = ChunkWriter(self.store, known=known, progress=progress)
            entries: list[FileEntry] = []
            try:
                for rel, size, read_at, *view in sources:
                    layout, chunks = writer.add_file(
                        chunk_impl, read_at, size, rel, view_at=view[0] if view else None
                    )
                    entries.append(
                        FileEntry(
                            path=rel,
                            size=size,
                            format=layout.format,
                            chunker=chunk_impl.name,
                            chunks=tuple((bytes(d), n) for d, n in chunks),
                            tensors=tuple(
                                TensorEntry(
                                    name=t.name,
                                    dtype=t.dtype,
                                    shape=t.shape,
                                    offset=t.offset,
                                    length=t.length,
                                )
                                for t in layout.tensors
                            ),
                            metadata=dict(layout.metadata),
                            inline={
                                bytes(d): writer.inline[d] for d, _ in chunks if d in writer.inline
                            },
                        )
                    )
                writer.close()
            except BaseException:
                writer.abort()
                raise
            if prechunked:
                self._check_present(prechunked)
                entries.extend(prechunked)
            session.check()  # a reaped (stale) session must not publish
            for _attempt in range(20):
                semver = version or bump(
                    max(existing, key=semver_key) if existing else None, bump_part
                )
                now = dt.datetime.now(dt.timezone.utc)
                manifest = Manifest(
                    model=model,
                    version=semver,
                    name=version_name(model, semver, now),
                    created_at=now,
                    created_by=created_by or default_actor(),
                    version_type=version_type,
                    performance_metrics=dict(metrics or {}),
                    training_data=td,
                    change_log=change_log,
                    tags=tags,
                    dependencies=tuple(dependencies),
                    parent=parent_version.version if parent_version else None,
                    files=tuple(entries),
                    extra=dict(extra or {}),
                )
                raw = encode(manifest)
                mid = Digest.of(raw)
                self.store.put_if_absent(manifest_key(mid), raw)
                index = json.dumps({"manifest": mid.hex(), "name": manifest.name}).encode()
                if self.store.put_if_absent(version_key(model, semver), index):
                    break
                if version is not None:
                    raise AlreadyExistsError(f"{model} v{semver} already exists")
                existing = self.catalog.version_index(
                    model
                )  # lost a race for the next number: retry
            else:  # pragma: no cover - twenty concurrent committers in a row
                raise AlreadyExistsError(f"could not allocate a new version of {model}")
            self.catalog.remember(mid, manifest)
            for t in tags:
                self.store.put_if_absent(tag_key(model, t, semver), b"")
            v = Version(manifest, mid, tags)
            moved = self._after_commit_ref(v, ref, reason)
            st = writer.stats
            return CommitResult(
                v,
                st.logical_bytes + sum(e.size for e in prechunked),
                st.new_bytes,
                st.chunks,
                st.new_chunks,
                time.perf_counter() - t0,
                moved,
            )

    def _check_present(self, entries: Sequence[FileEntry]) -> None:
        keys = {chunk_key(d): d for e in entries for d in e.chunk_digests() if d not in e.inline}
        missing = set(keys) - self.store.exists_many(keys)
        if missing:
            raise NotFoundError(
                f"{len(missing)} chunk(s) of pre-stored files are missing, e.g. "
                f"{keys[min(missing)].short()} (swept by GC or never written)"
            )

    def _default_parent(self, model: str, existing: dict[str, Digest]) -> str | None:
        if not existing:
            return None
        try:
            return self.refs.resolve(model, "current").version
        except NotFoundError:
            return max(existing, key=semver_key)

    def _after_commit_ref(self, v: Version, ref: str | None, reason: str) -> str | None:
        value = RefValue.of(v.target)
        if ref is not None:
            self._move(
                v.model,
                ref,
                value,
                expected_seq="any",
                reason=reason or f"commit {v.version}",
                trigger="commit",
                op="commit",
            )
            return ref
        rec, _ = self.refs.read(v.model, "current")
        if rec is None:
            from casstore.errors import ConflictError

            try:
                self._move(
                    v.model,
                    "current",
                    value,
                    expected_seq=None,
                    reason="first version",
                    trigger="commit",
                    op="commit",
                )
            except ConflictError:
                return None  # another first commit set it
            return "current"
        return None

    # -- reading versions ----------------------------------------------------------------
    def models(self) -> list[str]:
        return self.catalog.models()

    def manifest(self, digest: Digest) -> Manifest:
        return self.catalog.manifest(digest)

    def versions(self, model: str) -> list[Version]:
        """Every version of ``model``, oldest semantic version first."""
        return self.catalog.versions(model)

    def get_version(self, model: str, spec: str, *, request_key: str | None = None) -> Version:
        """A version by full name, ``1.2.0``/``v1.2.0``, ``@ref`` or ``latest``."""
        return self.catalog.get_version(model, spec, self.refs, request_key=request_key)

    def open_file(self, model: str, spec: str, path: str | None = None) -> VersionFile:
        """A seekable, verified read-only file object for one file of a version."""
        v = self.get_version(model, spec)
        files = v.manifest.files
        if path is None:
            if len(files) != 1:
                raise InvalidInputError(f"{v.name} has {len(files)} files; name one")
            entry = files[0]
        else:
            entry = v.manifest.file(path)
        return VersionFile(self.chunks, v.manifest, entry)

    def checkout(self, model: str, spec: str, dest: str | os.PathLike[str]) -> list[Path]:
        """Write every file of a version under ``dest``, byte-identical to what was committed."""
        v = self.get_version(model, spec)
        root = Path(dest)
        root.mkdir(parents=True, exist_ok=True)
        return [checkout_file(self.chunks, v.manifest, f, root) for f in v.manifest.files]

    # -- tags ----------------------------------------------------------------------------
    def tag(self, model: str, spec: str, *tags: str) -> Version:
        with self._writing("tag"):
            v = self.get_version(model, spec)
            for t in tags:
                self.store.put_if_absent(tag_key(model, t, v.version), b"")
        return self.get_version(model, v.version)

    def untag(self, model: str, spec: str, *tags: str) -> Version:
        v = self.get_version(model, spec)
        for t in tags:
            key = tag_key(model, t, v.version)
            if t not in v.tags:
                raise NotFoundError(f"{v.name} has no tag {t!r}")
            self.store.delete(key)
        return self.get_version(model, v.version)

    # -- inspect -------------------------------------------------------------------------
    def history(self, model: str) -> list[Version]:
        """The seed's get_version_history: every version, oldest first."""
        return self.versions(model)

    def query(self, model: str | None = None, query: Query | None = None) -> list[Version]:
        """Versions of one model (or all models) matching ``query``."""
        q = query or Query()
        models = [model] if model is not None else self.models()
        out: list[Version] = []
        for name in models:
            out.extend(v for v in self.versions(name) if q.matches(v))
        return out

    def compare(self, model: str, a: str, b: str) -> Comparison:
        """Metadata and metric deltas and a per-file, per-tensor content diff (a -> b)."""
        return compare(self.get_version(model, a).manifest, self.get_version(model, b).manifest)

    def stats(self, model: str | None = None) -> Stats:
        """Logical vs stored bytes, dedup ratio, chunk and version counts."""
        st = Stats()
        models = [model] if model is not None else self.models()
        all_chunks: dict[bytes, int] = {}
        for name in models:
            versions = self.versions(name)
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
            for info in self.store.list(CHUNKS):
                st.chunks += 1
                st.stored_bytes += info.size
            st.stored_bytes += sum(i.size for i in self.store.list(MANIFESTS))
        else:
            st.chunks = len(all_chunks)
            st.stored_bytes = sum(all_chunks.values())
        return st

    # -- seed-compatible names (VersionControlManager) -------------------------------------
    def create_version(
        self,
        model_name: str,
        model_path: str | os.PathLike[str],
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Seed API: commit ``model_path`` with seed-style metadata; returns the version name."""
        md = dict(metadata or {})
        res = self.commit(
            model_name,
            [model_path],
            version=md.pop("version", None),
            version_type=md.pop("version_type", "release"),
            metrics=md.pop("performance_metrics", None),
            training_data=md.pop("training_data", None),
            change_log=md.pop("change_log", ""),
            tags=md.pop("tags", ()),
            dependencies=md.pop("dependencies", ()),
            extra=md or None,
        )
        return res.version.name

    def get_version_history(self, model_name: str) -> list[dict[str, Any]]:
        return [v.to_dict() for v in self.history(model_name)]

    def compare_versions(self, model_name: str, version1: str, version2: str) -> dict[str, Any]:
        return self.compare(model_name, version1, version2).to_dict()

    def tag_version(self, model_name: str, version: str, tags: list[str]) -> bool:
        self.tag(model_name, version, *tags)
        return True
