"""The commit path, in three steps that never interleave: validate -> store -> publish.

1. :func:`prepare` checks every input before the first byte reaches the store: the options
   (:class:`CommitSpec`), the file names, each file's format (hostile files are refused here),
   the parent version, an explicit version's availability and that refs can be moved.
   A refused commit leaves the store exactly as it was.
2. :func:`store_and_publish` chunks and stores the files (only chunks the store lacks), then
   publishes: manifest -> version index entry -> tags. A reader that lists versions never
   reaches something that is not fully stored.
The ref move that may follow (``current`` on a model's first version, or ``ref=``) belongs to
the caller, which holds the same write session around both.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from casstore.chunking import Chunker, FileLayout, ReadAt, detect_layout, get_chunker
from casstore.chunking.base import TORCH_PICKLE, TORCH_ZIP
from casstore.chunking.encodings import get_policy
from casstore.chunking.torch_pickle import ALLOW_GLOBALS_KEY, check_global_name
from casstore.digest import Digest
from casstore.errors import AlreadyExistsError, InvalidInputError, NotFoundError
from casstore.records import ValidationError
from casstore.repo.catalog import Version
from casstore.repo.chunks import ChunkWriter, Progress, WriteStats
from casstore.repo.context import StoreContext
from casstore.repo.deltas import delta_index
from casstore.repo.keys import (
    check_name,
    chunk_key,
    expired_key,
    manifest_key,
    tag_key,
    version_key,
)
from casstore.repo.leases import Session
from casstore.repo.manifest import (
    VERSION_TYPES,
    FileEntry,
    Lineage,
    Manifest,
    TensorEntry,
    TrainingData,
    VersionType,
    check_param,
    check_relpath,
    encode,
    version_name,
)
from casstore.repo.model_catalog import Entry
from casstore.repo.query import PARAM_PREFIX
from casstore.repo.summary import summarize
from casstore.repo.versioning import Bump, bump, parse_spec

Source = tuple[str, int, ReadAt] | tuple[str, int, ReadAt, ReadAt]
"""A file to commit: ``(path in the version, size, read_at[, view_at])``.

``read_at(offset, n)`` must return exactly ``n`` bytes; it is called from one thread at a time
per source, with bounded read sizes. ``view_at`` (optional) serves bulk piece data without a
copy, e.g. from a memory map."""

_BUMPS = ("major", "minor", "patch")



@dataclass(frozen=True)
class CommitSpec:
    """Everything a commit records besides the files, validated by :meth:`build`."""

    model: str
    version: str | None = None  # explicit MAJOR.MINOR.PATCH; None: bump the latest
    bump: Bump = "patch"
    version_type: VersionType = "release"
    metrics: Mapping[str, float] = field(default_factory=dict)
    training_data: TrainingData = field(default_factory=TrainingData)
    change_log: str = ""
    tags: tuple[str, ...] = ()
    dependencies: tuple[str, ...] = ()
    parent: str | None = None  # a version spec; None: what ``current`` points at
    created_by: str | None = None
    ref: str | None = None  # move this ref to the new version
    reason: str = ""
    chunker: str | None = None  # None: the store's chunker
    extra: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    lineage: Lineage = field(default_factory=Lineage)
    allow_globals: tuple[str, ...] = ()  # pickle globals torch files may name (inert stubs)

    @classmethod
    def build(
        cls,
        model: str,
        *,
        version: str | None = None,
        bump_part: str = "patch",
        version_type: str = "release",
        metrics: Mapping[str, float] | None = None,
        training_data: Mapping[str, Any] | TrainingData | None = None,
        change_log: str = "",
        tags: Iterable[str] = (),
        dependencies: Iterable[str] = (),
        parent: str | None = None,
        created_by: str | None = None,
        ref: str | None = None,
        reason: str = "",
        chunker: str | None = None,
        extra: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        lineage: Mapping[str, str | None] | Lineage | None = None,
        allow_globals: Iterable[str] = (),
    ) -> CommitSpec:
        """Check every option; InvalidInputError names the first bad one. Touches no store."""
        check_name("model", model)
        if version is not None:
            version = parse_spec(model, _text("version", version)).semver
            if version is None:
                raise InvalidInputError("an explicit version must be MAJOR.MINOR.PATCH")
        if bump_part not in _BUMPS:
            raise InvalidInputError(f"bump must be one of {', '.join(_BUMPS)}, not {bump_part!r}")
        if version_type not in VERSION_TYPES:
            raise InvalidInputError(
                f"version type must be one of {', '.join(VERSION_TYPES)}, not {version_type!r}"
            )
        if parent is not None:
            parse_spec(model, _text("parent", parent))
        if ref is not None:
            check_name("ref", ref)
        if chunker is not None:
            get_chunker(chunker)
        spec = cls(
            model=model,
            version=version,
            bump=bump_part,  # type: ignore[arg-type]
            version_type=version_type,  # type: ignore[arg-type]
            metrics=_metrics(metrics or {}),
            training_data=_training_data(training_data),
            change_log=_text("change log", change_log),
            tags=tuple(check_name("tag", t) for t in _strings("tags", tags)),
            dependencies=tuple(_strings("dependencies", dependencies)),
            parent=parent,
            created_by=None if created_by is None else _text("created_by", created_by),
            ref=ref,
            reason=_text("reason", reason),
            chunker=chunker,
            extra=_extra(extra or {}),
            params=_params(params or {}),
            lineage=_lineage(lineage),
            allow_globals=tuple(sorted(set(
                map(check_global_name, _strings("allow_globals", allow_globals))))),
        )
        spec.draft(version or "0.0.0", "")  # what the manifest's own validators would refuse
        return spec

    def draft(
        self, semver: str, created_by: str, parent: str | None = None,
        files: tuple[FileEntry, ...] = (),
    ) -> Manifest:
        """The manifest this spec makes (now), checked and encodable; InvalidInputError if not."""
        now = dt.datetime.now(dt.timezone.utc)
        m = Manifest.from_input(dict(
            model=self.model,
            version=semver,
            name=version_name(self.model, semver, now),
            created_at=now,
            created_by=self.created_by or created_by,
            version_type=self.version_type,
            performance_metrics=dict(self.metrics),
            training_data=self.training_data,
            change_log=self.change_log,
            tags=self.tags,
            dependencies=self.dependencies,
            parent=parent,
            files=files,
            extra=dict(self.extra),
            params=dict(self.params),
            lineage=self.lineage,
        ), "version metadata")
        try:
            encode(m)
        except (TypeError, ValueError, OverflowError) as e:  # msgpack: not encodable
            raise InvalidInputError(f"version metadata cannot be stored: {e}") from None
        return m


@dataclass
class CommitResult:
    """What a commit stored: the new version and the bytes it added."""

    version: Version
    logical_bytes: int
    new_bytes: int
    chunks: int
    new_chunks: int
    seconds: float
    ref_moved: str | None = None
    auto_gc: Any = None  # what the automatic cleanup after the commit did (ops.autogc)
    ref_error: str | None = None  # the version is stored, but ``ref=`` could not be moved

    def __repr__(self) -> str:
        return (
            f"CommitResult({self.version.name}, {self.logical_bytes} bytes, "
            f"{self.new_bytes} new, ref={self.ref_moved!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        v = self.version
        return {
            "model_name": v.model,
            "version": f"v{v.version}_{v.created_at:%Y%m%d_%H%M%S}",
            "semver": v.version,
            "name": v.name,
            "id": v.id.hex(),
            "logical_bytes": self.logical_bytes,
            "new_bytes": self.new_bytes,
            "chunks": self.chunks,
            "new_chunks": self.new_chunks,
            "seconds": round(self.seconds, 4),
            "ref": self.ref_moved,
            "auto_gc": None if self.auto_gc is None else self.auto_gc.to_dict(),
            "ref_error": self.ref_error,
        }


@dataclass
class PreparedCommit:
    """A validated commit: what :func:`store_and_publish` needs, nothing stored yet."""

    spec: CommitSpec
    sources: list[tuple[Source, FileLayout]]
    prechunked: tuple[FileEntry, ...]
    chunker: Chunker
    started: float


def prepare(
    ctx: StoreContext,
    spec: CommitSpec,
    sources: Sequence[Source],
    prechunked: Sequence[FileEntry] = (),
) -> PreparedCommit:
    """Validate everything about a commit; reads the store, writes nothing."""
    t0 = time.perf_counter()
    if not sources and not prechunked:
        raise InvalidInputError("nothing to commit")
    ctx.refs.check_writable()  # a commit may move a ref: refuse before storing anything
    seen: set[str] = set()
    for rel in [s[0] for s in sources] + [e.path for e in prechunked]:
        check_relpath(rel)
        if rel in seen:
            raise InvalidInputError(f"duplicate path {rel!r}")
        seen.add(rel)
    chunker = get_chunker(spec.chunker or ctx.config.chunker)
    # every file's format, parsed once: hostile files are refused before anything is stored
    parsed = [(s, detect_layout(s[2], s[1], s[0], spec.allow_globals)) for s in sources]
    if spec.version is not None:
        check_new_number(ctx, spec.model, spec.version)
    if spec.parent is not None:
        ctx.get_version(spec.model, spec.parent)  # refused now if it does not exist
    return PreparedCommit(spec, parsed, tuple(prechunked), chunker, t0)


def check_new_number(ctx: StoreContext, model: str, semver: str) -> None:
    """Refuse an explicit version that exists or existed (numbers are never reused): two
    requests, whatever the history's length."""
    if ctx.store.exists(version_key(model, semver)):
        raise AlreadyExistsError(f"{model} v{semver} already exists")
    if ctx.store.exists(expired_key(model, semver)):
        raise AlreadyExistsError(
            f"{model} v{semver} was used by a version GC expired; numbers are never reused"
        )


def store_and_publish(
    ctx: StoreContext,
    plan: PreparedCommit,
    session: Session,
    *,
    progress: Progress | None = None,
) -> CommitResult:
    """Store the files' chunks, then publish manifest -> index entry -> tags.

    The parent is resolved here, inside the caller's write session: its chunks are taken as
    present without asking the store, which is safe only while no GC sweep can run.
    """
    if not ctx.exists:
        ctx.init()
    ctx.catalog.ensure_catalogs()
    parent = _parent(ctx, plan)
    writer, known = _writer(ctx, plan, parent, progress)
    entries: list[FileEntry] = []
    try:
        for (rel, size, read_at, *view), layout in plan.sources:
            _, chunks = writer.add_file(
                plan.chunker, read_at, size, rel,
                view_at=view[0] if view else None, layout=layout,
            )
            entries.append(_file_entry(rel, size, layout, plan.chunker, chunks, writer,
                                       plan.spec.allow_globals))
        writer.close()
    except BaseException:
        writer.abort()
        raise
    if plan.prechunked:
        _check_present(ctx, plan.prechunked)
        entries.extend(plan.prechunked)
    session.check()  # a reaped (stale) session must not publish
    st = writer.stats
    counters = _counters(st, tuple(entries), known)
    version = _publish(ctx, plan, tuple(entries), parent.version if parent else None, counters)
    return CommitResult(
        version,
        st.logical_bytes + sum(e.size for e in plan.prechunked),
        st.new_bytes,
        st.chunks,
        st.new_chunks,
        time.perf_counter() - plan.started,
    )


def _counters(st: WriteStats, files: Sequence[FileEntry], known: set[Digest]) -> dict[str, int]:
    """What this commit adds to the stats counters (:mod:`casstore.repo.stats`): the chunk
    objects it created, and those new to its model: used by none of the versions it derives
    from. Of these, the ones it found already stored (``found_*``) may be another model's or
    an older version's. (Chunks of pre-stored files and delta bases the writer never looked
    up count as found, their stored size taken as their size.)"""
    objects: dict[Digest, int] = {}
    for f in files:
        objects.update(f.object_sizes())
    new = {d: n for d, n in objects.items() if d not in known}
    others = max(0, len(new) - st.new_chunks - st.found_chunks)
    other_bytes = max(0, sum(new.values()) - st.new_bytes - st.found_bytes)
    return {
        "chunks": st.new_chunks, "stored": st.stored_bytes, "unique": st.new_bytes,
        "encoded": st.stored_bytes, "ref_chunks": len(new), "ref_unique": sum(new.values()),
        "ref_encoded": st.stored_bytes + st.found_stored + other_bytes,
        "found_chunks": st.found_chunks + others, "found_unique": st.found_bytes + other_bytes,
    }


def _writer(
    ctx: StoreContext, plan: PreparedCommit, parent: Version | None, progress: Progress | None
) -> tuple[ChunkWriter, set[Digest]]:
    """A chunk writer with the store's encoding policy and the delta bases it may use.

    Deltas go against the model's newest version (not ``current``: a training run that
    commits without moving the ref would otherwise delta every checkpoint against the first),
    or against an explicit ``parent=``. The chunks of both are taken as present, with the
    delta chains of those stored as deltas, so a reused chunk keeps its bases alive.
    """
    policy = get_policy(ctx.config.encoding)
    newest = parent if plan.spec.parent is not None else _newest(ctx, plan, parent)
    manifests = {v.id: v.manifest for v in (parent, newest) if v is not None}.values()
    known: set[Digest] = set()
    chains: dict[Digest, tuple[Digest, ...]] = {}
    for m in manifests:
        known |= m.chunk_set()
        chains.update(m.delta_chains())
    deltas = delta_index(ctx.store, policy, newest.manifest if newest else None)
    writer = ChunkWriter(ctx.store, known=known, chains=chains, progress=progress,
                         policy=policy, deltas=deltas, reader=ctx.chunks)
    return writer, known


def _newest(ctx: StoreContext, plan: PreparedCommit, parent: Version | None) -> Version | None:
    """The model's highest version, from its catalog (its head; a version GC expired since
    is simply not used)."""
    try:
        top = ctx.catalog.newest(plan.spec.model, 1)
    except NotFoundError:
        return parent
    if not top or (parent is not None and parent.version == top[0].version):
        return parent
    try:
        top[0].manifest  # noqa: B018 - read now: it may have been expired meanwhile
    except NotFoundError:
        return parent
    return top[0]


def _publish(
    ctx: StoreContext,
    plan: PreparedCommit,
    files: tuple[FileEntry, ...],
    parent: str | None,
    counters: dict[str, int],
) -> Version:
    """Reserve a number in the catalog, publish manifest -> index entry -> tags, then fold
    the version into the catalog. Two writers never get one number; a number is never
    reused (the catalog's high-water mark counts expired versions)."""
    spec = plan.spec
    cat = ctx.catalog.models_catalog
    for _attempt in range(20):
        semver = cat.reserve(spec.model, lambda high: spec.version or bump(high, spec.bump),
                             ctx.actor)
        manifest = spec.draft(semver, ctx.actor, parent, files)
        raw = encode(manifest)
        mid = Digest.of(raw)
        ctx.store.put_if_absent(manifest_key(mid), raw)
        index = json.dumps({"manifest": mid.hex(), "name": manifest.name}).encode()
        if ctx.store.put_if_absent(version_key(spec.model, semver), index):
            break
        cat.finalize(spec.model, cat.published(spec.model, semver), semver)  # taken: fold in
        if spec.version is not None:
            raise AlreadyExistsError(f"{spec.model} v{semver} already exists")
    else:  # pragma: no cover - twenty numbers taken behind the catalog's back in a row
        raise AlreadyExistsError(f"could not allocate a new version of {spec.model}")
    ctx.catalog.remember(mid, manifest)
    for t in spec.tags:
        ctx.store.put_if_absent(tag_key(spec.model, t, semver), b"")
    counters = {**counters, "stored": counters["stored"] + len(raw),
                "ref_manifests": len(raw)}
    cat.finalize(spec.model, Entry(summarize(manifest, mid), tuple(sorted(spec.tags))), semver,
                 counters)
    return Version.of(manifest, mid, tuple(sorted(spec.tags)))


def _file_entry(
    rel: str,
    size: int,
    layout: FileLayout,
    chunker: Chunker,
    chunks: list[tuple[Digest, int]],
    writer: ChunkWriter,
    allow_globals: tuple[str, ...] = (),
) -> FileEntry:
    metadata = dict(layout.metadata)
    if allow_globals and layout.format in (TORCH_ZIP, TORCH_PICKLE):
        metadata[ALLOW_GLOBALS_KEY] = ",".join(allow_globals)  # what loads must allow too
    return FileEntry(
        path=rel,
        size=size,
        format=layout.format,
        chunker=chunker.name,
        chunks=tuple((bytes(d), n) for d, n in chunks),
        tensors=tuple(
            TensorEntry(name=t.name, dtype=t.dtype, shape=t.shape, offset=t.offset,
                        length=t.length)
            for t in layout.tensors
        ),
        metadata=metadata,
        inline={bytes(d): writer.inline[d] for d, _ in chunks if d in writer.inline},
        deltas=writer.deltas_of(chunks),
    )


def _check_present(ctx: StoreContext, entries: Sequence[FileEntry]) -> None:
    keys = {chunk_key(d): d for e in entries for d in e.object_sizes()}  # delta bases too
    missing = set(keys) - ctx.store.exists_many(keys)
    if missing:
        raise NotFoundError(
            f"{len(missing)} chunk(s) of pre-stored files are missing, e.g. "
            f"{keys[min(missing)].short()} (swept by GC or never written)"
        )


def _parent(ctx: StoreContext, plan: PreparedCommit) -> Version | None:
    """The version this one derives from: ``parent=``, else what ``current`` points at, else
    the newest version (None for a model's first version)."""
    model = plan.spec.model
    if plan.spec.parent is not None:
        return ctx.get_version(model, plan.spec.parent)
    try:
        return ctx.get_version(model, "@current")
    except NotFoundError:
        pass
    try:
        return ctx.get_version(model, "latest")
    except NotFoundError:
        return None


# -- option checks ---------------------------------------------------------------------------
def _text(what: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be text, not {type(value).__name__}")
    return value


def _strings(what: str, values: Iterable[str]) -> list[str]:
    if isinstance(values, str):
        raise InvalidInputError(f"{what} must be a list of strings, not one string")
    return [_text(what, v) for v in values]


def _metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    if not isinstance(metrics, Mapping):
        raise InvalidInputError("metrics must be a mapping of name -> number")
    out: dict[str, float] = {}
    for k, v in metrics.items():
        if not isinstance(k, str) or not k:
            raise InvalidInputError(f"metric name {k!r} must be non-empty text")
        if k.startswith(PARAM_PREFIX):
            raise InvalidInputError(
                f"metric name {k!r}: the prefix {PARAM_PREFIX!r} names string params (params=)"
            )
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InvalidInputError(f"metric {k}={v!r} is not a number")
        out[k] = float(v)  # NaN and inf are recorded as measured (a diverged run)
    return out


def _params(params: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(params, Mapping):
        raise InvalidInputError("params must be a mapping of name -> text")
    return dict(check_param(k, v) for k, v in params.items())


_LINEAGE_FIELDS = ("run_id", "dataset", "dataset_version")


def _lineage(value: Mapping[str, str | None] | Lineage | None) -> Lineage:
    if value is None:
        return Lineage()
    if isinstance(value, Lineage):
        return value
    if not isinstance(value, Mapping):
        raise InvalidInputError("lineage must be a mapping (run_id=, dataset=, dataset_version=)")
    unknown = sorted(map(str, set(value) - set(_LINEAGE_FIELDS)))
    if unknown:
        raise InvalidInputError(
            f"unknown lineage field(s) {', '.join(unknown)}: use {', '.join(_LINEAGE_FIELDS)}"
        )
    for k, v in value.items():
        if v is not None and not isinstance(v, str):
            raise InvalidInputError(f"lineage {k} must be text, not {type(v).__name__}")
    return Lineage.from_input(dict(value), "lineage")


def _training_data(value: Mapping[str, Any] | TrainingData | None) -> TrainingData:
    if value is None:
        return TrainingData()
    if isinstance(value, TrainingData):
        return value
    if not isinstance(value, Mapping):
        raise InvalidInputError("training data must be a JSON object (a mapping)")
    try:
        return TrainingData(**value)
    except ValidationError as e:
        raise InvalidInputError(f"invalid training data: {e}") from None
    except TypeError as e:  # non-string keys
        raise InvalidInputError(f"invalid training data: {e}") from None


def _extra(extra: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(extra, Mapping) or not all(isinstance(k, str) for k in extra):
        raise InvalidInputError("extra metadata must be a mapping with text keys")
    try:
        msgpack.packb(dict(extra), use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as e:
        raise InvalidInputError(f"extra metadata cannot be stored: {e}") from None
    return dict(extra)

