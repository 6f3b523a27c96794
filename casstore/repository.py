"""The Repository facade: casstore's Python API over one store.

A thin layer: it assembles a :class:`~casstore.repo.context.StoreContext` (store, config,
catalog, refs, leases, chunk reader) and the :class:`~casstore.ops.rollout.Rollout` that moves
refs once, and delegates every call to the module that holds the behaviour:

* commit        -> :mod:`casstore.repo.commit` (validate -> store -> publish)
* read, inspect -> :mod:`casstore.repo.catalog`, :mod:`~casstore.repo.files`,
  :mod:`~casstore.repo.query`, :mod:`~casstore.repo.compare`, :mod:`~casstore.repo.stats`
* move refs     -> :mod:`casstore.ops.rollout` (promote, rollback, progressive splits)
* maintain      -> :mod:`casstore.ops.gc`, :mod:`casstore.ops.verify`
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from casstore.errors import (
    AlreadyExistsError,
    CasstoreError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    UntrustedError,
)
from casstore.ops.hooks import Hooks, Notifier
from casstore.ops.rollout import DEFAULT_STEPS, MoveResult, Rollout
from casstore.repo.catalog import Catalog, Version
from casstore.repo.config import StoreConfig
from casstore.repo.context import StoreContext
from casstore.repo.keys import check_name
from casstore.repo.leases import Leases, LeaseSettings
from casstore.repo.manifest import FileEntry, Manifest
from casstore.repo.refs import RefStore, RefValue, Target
from casstore.store import ObjectStore, open_store

if TYPE_CHECKING:  # imported where used: a command loads only the code it runs
    from casstore.ops.gc import GcPlan, GcReport
    from casstore.ops.regression import RegressionPolicy
    from casstore.ops.remove import Removed
    from casstore.ops.retention import RetentionPolicy
    from casstore.ops.signing import PrivateKey, SignatureInfo
    from casstore.ops.transfer import StoreOutcome, TransferReport
    from casstore.ops.trust import Rule, TrustPolicy
    from casstore.ops.verify import VerifyReport
    from casstore.repo.chunks import ChunkReader, Progress
    from casstore.repo.commit import CommitResult, CommitSpec, Source
    from casstore.repo.compare import Comparison
    from casstore.repo.files import VersionFile
    from casstore.repo.query import Query
    from casstore.repo.stats import Stats
    from casstore.repo.storage import VersionStorage

__all__ = ["CommitResult", "Repository", "Stats", "Version"]

_REF_RETRIES = 6


class RefNotMoved(Exception):
    """The commit is published but its ref could not be moved (reported, not raised)."""


def __getattr__(name: str) -> Any:
    if name == "CommitResult":  # imported on first use, like the commit path it belongs to
        from casstore.repo.commit import CommitResult

        return CommitResult
    if name == "Stats":
        from casstore.repo.stats import Stats

        return Stats
    raise AttributeError(f"module 'casstore.repository' has no attribute {name!r}")


class Repository:
    """casstore's Python API over one store (a local folder, s3://..., any fsspec URL).

    ``actor`` names who moves refs (default ``user@host``); ``hooks`` are the health-check
    timeout and the notifiers told about every ref move; ``lease_settings`` the write-session
    and GC-lease timeouts; ``trust_anchors`` the key ids that must have signed the store's
    first trust policy (see :mod:`casstore.ops.trust`). Storage options go to the backend
    (e.g. ``endpoint_url=``).
    """

    def __init__(
        self,
        store: ObjectStore | str | os.PathLike[str],
        *,
        actor: str | None = None,
        hooks: Hooks | None = None,
        lease_settings: LeaseSettings | None = None,
        trust_anchors: Sequence[str] = (),
        **storage_options: Any,
    ) -> None:
        if not isinstance(store, ObjectStore):
            store = open_store(store, **storage_options)
        elif storage_options:
            raise InvalidInputError("storage options apply only when opening a store by URL")
        self.ctx = StoreContext(store, actor=actor, lease_settings=lease_settings)
        self.hooks = hooks if hooks is not None else Hooks()
        self.rollout = Rollout(self.ctx, self.hooks, anchors=trust_anchors)

    def __repr__(self) -> str:
        return f"Repository({self.store.url!r})"

    # -- the services, for callers that need one directly ----------------------------------
    @property
    def store(self) -> ObjectStore:
        return self.ctx.store

    @property
    def catalog(self) -> Catalog:
        return self.ctx.catalog

    @property
    def chunks(self) -> ChunkReader:
        return self.ctx.chunks

    @property
    def leases(self) -> Leases:
        return self.ctx.leases

    @property
    def refs(self) -> RefStore:
        return self.ctx.refs

    @property
    def config(self) -> StoreConfig:
        return self.ctx.config

    @property
    def exists(self) -> bool:
        return self.ctx.exists

    def init(self, config: StoreConfig | None = None) -> StoreConfig:
        """Create the store's config if absent (see :meth:`StoreContext.init`)."""
        return self.ctx.init(config)

    def on_ref_move(self, fn: Notifier) -> None:
        """Call ``fn(event)`` after every ref move (the event is a JSON-able dict)."""
        self.hooks.notifiers.append(fn)

    # -- commit --------------------------------------------------------------------------
    def commit(
        self,
        model: str,
        paths: Sequence[str | os.PathLike[str]],
        *,
        progress: Progress | None = None,
        **options: Any,
    ) -> CommitResult:
        """Store files/folders as a new version of ``model``.

        ``options`` are :meth:`CommitSpec.build`'s: ``version=`` (explicit, must be new;
        default: the latest bumped by ``bump_part=``), ``version_type=``, ``metrics=``,
        ``training_data=``, ``change_log=``, ``tags=``, ``dependencies=``, ``parent=``,
        ``created_by=``, ``ref=`` (move this ref to the new version), ``reason=``,
        ``chunker=``, ``extra=``. Every option and file is checked before anything is
        stored. The first version of a model sets ``current``.
        """
        from casstore.repo.commit import CommitSpec
        from casstore.repo.inputs import FileSource, collect

        spec = CommitSpec.build(model, **options)
        files = collect(paths)
        sources = [FileSource(p) for _, p in files]
        try:
            return self._commit(
                spec,
                [(rel, s.size, s.read_at, s.view_at) for (rel, _), s in zip(files, sources)],
                (),
                progress,
            )
        finally:
            for s in sources:
                s.close()

    def commit_sources(
        self,
        model: str,
        sources: Sequence[Source],
        *,
        prechunked: Sequence[FileEntry] = (),
        progress: Progress | None = None,
        **options: Any,
    ) -> CommitResult:
        """Commit in-memory or virtual files: ``(relative path, size, read_at(offset, n))``.

        Same options and guarantees as :meth:`commit`. ``prechunked`` adds files whose chunks
        some other writer already stored (e.g. the ranks of a distributed checkpoint); their
        presence is checked inside this commit's write session, so GC cannot sweep them
        between the check and the publish.
        """
        from casstore.repo.commit import CommitSpec

        return self._commit(CommitSpec.build(model, **options), sources, prechunked, progress)

    def _commit(
        self,
        spec: CommitSpec,
        sources: Sequence[Source],
        prechunked: Sequence[FileEntry],
        progress: Progress | None,
    ) -> CommitResult:
        from casstore.ops.autogc import after_commit
        from casstore.repo.commit import prepare, store_and_publish

        plan = prepare(self.ctx, spec, sources, prechunked)  # nothing stored before this passes
        with self.ctx.writing("commit") as session:
            result = store_and_publish(self.ctx, plan, session, progress=progress)
            try:
                result.ref_moved = self._after_commit_ref(result.version, spec.ref, spec.reason)
            except RefNotMoved as e:
                result.ref_error = str(e)
        result.auto_gc = after_commit(self.ctx, spec.model)  # opt-in; never raises
        return result

    def _after_commit_ref(self, v: Version, ref: str | None, reason: str) -> str | None:
        """Move ``ref`` (or ``current``, for a model's first version) to the new version.

        The version is published already, so failing here must not look like a failed
        commit (a retry would store a duplicate): a move that loses a race to another writer
        is retried on top of what is there; one that still cannot land raises
        :class:`RefNotMoved`, which :meth:`_commit` turns into ``result.ref_error``.
        """
        value = RefValue.of(v.target)
        if ref is not None:
            last: CasstoreError | None = None
            for attempt in range(_REF_RETRIES):
                try:
                    self.rollout.move(
                        v.model, ref, value, expected_seq="any",
                        reason=reason or f"commit {v.version}", trigger="commit", op="commit",
                    )
                    return ref
                except UntrustedError as e:
                    raise UntrustedError(f"committed {v.name}, but {ref} did not move: {e}") from e
                except ConflictError as e:  # another writer moved it between read and CAS
                    last = e
                    time.sleep(0.02 * 2**attempt)
                except CasstoreError as e:
                    last = e
                    break
            raise RefNotMoved(f"committed {v.name}; ref {ref!r} not moved because: {last}")
        rec, _ = self.refs.read(v.model, "current")
        if rec is not None:
            return None
        try:
            self.rollout.move(
                v.model, "current", value, expected_seq=None, reason="first version",
                trigger="commit", op="commit",
            )
        except (ConflictError, UntrustedError):
            return None  # another first commit set it, or `current` needs a signed version
        return "current"

    # -- reading versions ----------------------------------------------------------------
    def models(self) -> list[str]:
        return self.catalog.models()

    def manifest(self, digest: Any) -> Manifest:
        return self.catalog.manifest(digest)

    def versions(self, model: str) -> list[Version]:
        """Every version of ``model``, oldest semantic version first."""
        return self.ctx.versions(model)

    def get_version(self, model: str, spec: str, *, request_key: str | None = None) -> Version:
        """A version by full name, ``1.2.0``/``v1.2.0``, ``@ref`` or ``latest``."""
        return self.ctx.get_version(model, spec, request_key=request_key)

    def open_file(self, model: str, spec: str, path: str | None = None) -> VersionFile:
        """A seekable, verified read-only file object for one file of a version."""
        from casstore.repo.files import VersionFile

        v = self.get_version(model, spec)
        files = v.manifest.files
        if path is None:
            if len(files) != 1:
                raise InvalidInputError(f"{v.name} has {len(files)} files; name one")
            entry = files[0]
        else:
            entry = v.manifest.file(path)
        return VersionFile(self.chunks, v.manifest, entry)

    def checkout(
        self,
        model: str,
        spec: str,
        dest: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        with_signature: bool | str = False,
    ) -> list[Path]:
        """Write every file of a version under ``dest``, byte-identical to what was committed.

        Refuses (:class:`AlreadyExistsError`, nothing written) when a file exists, unless
        ``overwrite``; never writes through a symlink; each file appears only once complete
        (see :mod:`casstore.repo.checkout`). Memory stays bounded whatever the file sizes.
        ``with_signature`` also writes a stored signature as ``model.sig`` (the newest, or the
        one by the key id a string names), so ``model_signing verify key`` accepts the folder."""
        from casstore.ops.signing import SIGNATURE_FILE, signature_bundle
        from casstore.repo.checkout import checkout, write_beside

        v = self.get_version(model, spec)
        bundle = None
        if with_signature:
            if any(f.path == SIGNATURE_FILE for f in v.manifest.files):
                raise InvalidInputError(f"{v.name} has a file named {SIGNATURE_FILE} itself")
            keyid = with_signature if isinstance(with_signature, str) else None
            bundle = signature_bundle(self.ctx, model, v.version, keyid)
        root = Path(dest)
        sig_path = root / SIGNATURE_FILE
        if bundle is not None and not overwrite and os.path.lexists(sig_path):
            raise AlreadyExistsError(f"checkout: {sig_path} exists (overwrite it with --force)")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(e.errno, f"checkout: cannot create {root}: {e.strerror}") from e
        out = checkout(self.chunks, v.manifest, root, overwrite=overwrite,
                       encoded=self.config.encoding != "off")
        if bundle is not None:
            write_beside(root, SIGNATURE_FILE, bundle, overwrite=overwrite)
            out.append(sig_path)
        return out

    # -- tags ----------------------------------------------------------------------------
    def tag(self, model: str, spec: str, *tags: str) -> Version:
        """Add tags (markers and catalog, see :meth:`ModelCatalog.change_tags`)."""
        for t in tags:
            check_name("tag", t)
        with self.ctx.writing("tag"):
            self.catalog.ensure_catalogs()
            v = self.get_version(model, spec)
            now = self.catalog.models_catalog.change_tags(model, v.version, add=tags)
        return Version(v.summary, now, v.manifest)

    def untag(self, model: str, spec: str, *tags: str) -> Version:
        """Remove tags (markers and catalog, see :meth:`ModelCatalog.change_tags`)."""
        with self.ctx.writing("tag"):
            self.catalog.ensure_catalogs()
            v = self.get_version(model, spec)
            for t in tags:
                if t not in v.tags:
                    raise NotFoundError(f"{v.name} has no tag {t!r}")
            now = self.catalog.models_catalog.change_tags(model, v.version, remove=tags)
        return Version(v.summary, now, v.manifest)

    # -- inspect -------------------------------------------------------------------------
    def history(self, model: str) -> list[Version]:
        """The seed's get_version_history: every version, oldest first."""
        return self.versions(model)

    def query(self, model: str | None = None, query: Query | None = None) -> list[Version]:
        """Versions of one model (or all models) matching ``query``, in its order (default:
        model, then oldest version first), at most ``query.limit``. Reads one catalog per
        model (its head and segments), no manifest."""
        from casstore.repo.query import Query
        q = query or Query()
        if model is not None:
            return q.apply(self.versions(model))
        found = []
        for name in self.models():
            try:
                found += self.versions(name)
            except NotFoundError:
                continue  # a model whose first commit never published
        return q.apply(found)

    def log(self, model: str, limit: int | None = None) -> list[Version]:
        """Versions newest first (the highest ``limit`` semantic versions; all with None).
        Reads the catalog's head and only the segments needed."""
        found = self.catalog.newest(model, limit)
        if not found:
            raise NotFoundError(f"unknown model {model!r}")
        return found

    def compare(self, model: str, a: str, b: str, *, tensors: bool = False) -> Comparison:
        """Metadata and metric deltas and a per-file, per-tensor content diff (a -> b).
        Tensors are matched by name, also across renamed files; ``tensors=True`` adds, per
        changed tensor, dtype/shape on both sides, the largest absolute difference and the
        relative L2 change (reading only the changed tensors' bytes)."""
        from casstore.repo.compare import compare

        ma, mb = self.get_version(model, a).manifest, self.get_version(model, b).manifest
        c = compare(ma, mb)
        if tensors:
            from casstore.repo.tensordiff import tensor_changes

            c.tensor_changes = tensor_changes(self.ctx.chunks, ma, mb, c.pairs(ma, mb))
        return c

    def stats(self, model: str | None = None, *, exact: bool = False,
              recount: bool = False) -> Stats:
        """Logical vs stored bytes, bytes saved by dedup and by encoding, counts: from
        counters kept by commit, GC and rm (O(models) requests), or (``exact``) from every
        manifest and object. ``recount`` scans and saves the result as the counters' new
        base. What each figure means: :mod:`casstore.repo.stats`."""
        from casstore.repo.stats import recount as recount_store
        from casstore.repo.stats import store_stats

        if recount:
            recount_store(self.ctx)
        return store_stats(self.ctx, model, exact=exact)

    def storage(self, version: Version) -> VersionStorage:
        """How a version is stored: encodings, deltas, chain length (two small requests per
        chunk object, in parallel)."""
        from casstore.repo.storage import describe_version

        return describe_version(self.store, version.manifest)

    # -- refs (see casstore.ops.rollout) ---------------------------------------------------
    def set_ref(self, model: str, ref: str, spec: str, **kw: Any) -> MoveResult:
        """Point ``ref`` at a version: verify, switch atomically, health-check, maybe revert."""
        return self.rollout.set_ref(model, ref, spec, **kw)

    def promote(self, model: str, spec: str, *, ref: str = "current", **kw: Any) -> MoveResult:
        """Point ``ref`` at a version going forward (same operation as a targeted rollback)."""
        return self.rollout.promote(model, spec, ref=ref, **kw)

    def rollback(
        self, model: str, *, to: str | None = None, ref: str = "current", **kw: Any
    ) -> MoveResult:
        """Quick rollback (``to=None``: previous stable) or targeted rollback (``to=VERSION``),
        optionally with ``health_check=`` (a callable or shell command; failure reverts)."""
        return self.rollout.rollback(model, to=to, ref=ref, **kw)

    def previous_stable(self, model: str, ref: str = "current") -> Version:
        """Where a quick rollback of ``ref`` goes: the last stable version the ref served
        before its current one, read from its reflog (see ``Rollout.previous_stable``)."""
        return self.rollout.previous_stable(model, ref)

    def undo(self, model: str, *, ref: str = "current", **kw: Any) -> MoveResult:
        """Revert ``ref``'s last move (``rollback --undo``)."""
        return self.rollout.undo(model, ref=ref, **kw)

    def start_split(
        self,
        model: str,
        spec: str,
        *,
        ref: str = "current",
        steps: Sequence[float] = DEFAULT_STEPS,
        **kw: Any,
    ) -> MoveResult:
        """Begin a progressive rollout/rollback: ``steps[0]`` of the traffic to a version."""
        return self.rollout.start_split(model, spec, ref=ref, steps=steps, **kw)

    def advance(self, model: str, *, ref: str = "current", **kw: Any) -> MoveResult:
        return self.rollout.advance(model, ref=ref, **kw)

    def abort(self, model: str, *, ref: str = "current", **kw: Any) -> MoveResult:
        return self.rollout.abort(model, ref=ref, **kw)

    def resolve(self, model: str, ref: str = "current", request_key: str | None = None) -> Target:
        """Which version ``ref`` sends ``request_key`` to (sticky within a split)."""
        return self.rollout.resolve(model, ref, request_key)

    def verify_version(self, version: Version, *, read_data: bool = False) -> list[str]:
        """Problems that would make ``version`` unreadable (empty list: complete)."""
        return self.rollout.verify_version(version, read_data=read_data)

    def check_regression(
        self, model: str, policy: RegressionPolicy, **kw: Any
    ) -> dict[str, Any]:
        """Apply a regression policy to a ref (see :func:`.ops.regression.check_regression`)."""
        from casstore.ops.regression import check_regression

        return check_regression(self.rollout, model, policy, **kw)

    # -- signatures and trust (see casstore.ops.signing, casstore.ops.trust) --------------
    def sign(
        self,
        model: str,
        spec: str,
        private_key: bytes | PrivateKey,
        *,
        password: bytes | None = None,
        signer: str | None = None,
    ) -> tuple[SignatureInfo, bytes]:
        """Sign a version (model-signing format) and store the signature with it; returns the
        info and the bundle (what ``model.sig`` holds). The key itself is never stored."""
        from casstore.ops.signing import PrivateKey, sign_version

        key = private_key if isinstance(private_key, PrivateKey) else PrivateKey.from_pem(
            private_key, password
        )
        return sign_version(self.ctx, model, spec, key, signer=signer)

    def signatures(
        self,
        model: str,
        spec: str,
        trusted_keys: Sequence[bytes] | None = None,
        *,
        read_data: bool = False,
    ) -> list[SignatureInfo]:
        """Every signature of a version, checked against ``trusted_keys`` (public PEMs; None:
        the keys of the store's trust policy). ``read_data`` also re-hashes every file."""
        from casstore.ops.signing import check_signatures, load_public_keys

        v = self.get_version(model, spec)
        if trusted_keys is None:
            policy = self.rollout.trust.policy()
            keys = list(policy.trusted().values()) if policy is not None else []
        else:
            keys = load_public_keys(trusted_keys)
        return check_signatures(
            self.ctx, model, v.version, v.id.hex(), keys, read_data=read_data
        )

    def trust_policy(self) -> TrustPolicy | None:
        """The store's trust policy (None: none yet), after checking its signature chain (and
        that it extends what this repository saw before and is rooted in its anchors)."""
        return self.rollout.trust.policy()

    def set_trust_policy(
        self,
        keys: Sequence[tuple[str, bytes]],
        rules: Sequence[Rule],
        signer: bytes | PrivateKey,
        *,
        force_init: bool = False,
        password: bytes | None = None,
    ) -> TrustPolicy:
        """Replace the trust policy: ``keys`` as (name, public PEM); the change is signed by
        ``signer``, a private key the current policy trusts (``force_init``: the first one)."""
        from casstore.ops.signing import PrivateKey
        from casstore.ops.trust import set_policy

        key = signer if isinstance(signer, PrivateKey) else PrivateKey.from_pem(signer, password)
        return set_policy(self.ctx, keys, rules, key, force_init=force_init)

    # -- maintenance ---------------------------------------------------------------------
    def gc(
        self,
        policy: RetentionPolicy | None = None,
        models: Sequence[str] | None = None,
        *,
        grace_seconds: float | None = None,
        dry_run: bool = False,
    ) -> tuple[GcPlan, GcReport | None]:
        """Expire versions by retention policy and delete what nothing retained uses.
        ``dry_run`` returns the plan only; ``grace_seconds`` defaults to GC's own grace."""
        from casstore.ops.gc import DEFAULT_GRACE_SECONDS, GarbageCollector

        grace = DEFAULT_GRACE_SECONDS if grace_seconds is None else grace_seconds
        collector = GarbageCollector(self.ctx, grace_seconds=grace)
        plan = collector.plan(policy, models)
        return plan, None if dry_run else collector.execute(plan)

    def rm(self, model: str, *versions: str, dry_run: bool = False) -> Removed:
        """Delete versions: expire them now (refused, nothing removed, while a ref points at
        one); the next :meth:`gc` reclaims the chunks only they used."""
        from casstore.ops.remove import remove

        return remove(self.ctx, model, versions, dry_run=dry_run)

    def verify(self, *, read_data: bool = False) -> VerifyReport:
        """Every problem in the store, with the versions it affects."""
        from casstore.ops.verify import verify

        return verify(self.ctx, read_data=read_data)

    # -- other stores --------------------------------------------------------------------
    def push(
        self,
        dest: Repository,
        versions: Sequence[Version],
        *,
        refs: Sequence[str] = (),
        progress: Progress | None = None,
    ) -> TransferReport:
        """Copy ``versions`` to ``dest`` (only the chunks it lacks), then move ``refs`` there."""
        from casstore.ops.transfer import transfer

        return transfer(self.ctx, dest.ctx, versions, refs=refs, progress=progress,
                        hooks=dest.hooks)

    def rollback_across(
        self, replicas: Sequence[Repository], model: str, **kw: Any
    ) -> list[StoreOutcome]:
        """Move a ref to the same version here and in every replica, or nowhere if any
        cannot take it (see :func:`casstore.ops.transfer.rollback_across`)."""
        from casstore.ops.transfer import rollback_across

        return rollback_across([self.rollout, *(r.rollout for r in replicas)], model, **kw)

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

