"""One store's services, assembled once: store, config, catalog, refs, leases, chunk reader.

Every operation above this layer (commit, rollout, GC, verify, transfer) takes a
:class:`StoreContext` instead of building its own pieces, so they all see one config (single
writer, conditional writes), one manifest cache and one write-session discipline.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

from casstore.repo.catalog import Catalog, Version
from casstore.repo.config import StoreConfig, load_config, replace_config, save_config
from casstore.repo.leases import Leases, LeaseSettings, Session
from casstore.repo.manifest import verified_inline
from casstore.repo.refs import RefStore, default_actor
from casstore.store import ObjectStore, probe_conditional_writes
from casstore.store.base import together

if TYPE_CHECKING:
    from casstore.digest import Digest
    from casstore.repo.chunks import ChunkReader
    from casstore.repo.manifest import Manifest


class StoreContext:
    """The services of one store. ``actor`` names whoever moves refs through it."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        actor: str | None = None,
        lease_settings: LeaseSettings | None = None,
    ) -> None:
        self.store = store
        self.actor = actor or default_actor()
        self._config: StoreConfig | None = load_config(store)
        self._chunks: ChunkReader | None = None
        self._chunks_lock = threading.Lock()  # one reader: it holds the inline chunks
        self._inline: dict[Digest, memoryview] = {}  # verified before the reader was built
        self.catalog = Catalog(store, on_manifest=self._remember_inline)
        self.leases = Leases(store, lease_settings)
        self._refs: RefStore | None = None
        self._local = threading.local()

    @property
    def chunks(self) -> ChunkReader:
        """The chunk reader, built on first use: commands that read no chunk (``refs``,
        ``log``, ``rollback --to``) do not load the chunk and codec code."""
        if self._chunks is None:
            from casstore.repo.chunks import ChunkReader

            with self._chunks_lock:
                if self._chunks is None:
                    reader = ChunkReader(self.store)
                    reader.remember_verified(self._inline)  # of manifests loaded before
                    self._inline.clear()
                    self._chunks = reader
        return self._chunks

    def _remember_inline(self, manifest: Manifest) -> None:
        """Each manifest the catalog loads has its inline chunks checked against their digests
        (a mismatch fails that manifest's load) and handed to the chunk reader, or kept for
        it until it is built."""
        with self._chunks_lock:
            if self._chunks is None:
                self._inline.update(verified_inline(manifest, skip=self._inline))
                return
        self._chunks.remember_inline(manifest)

    # -- config --------------------------------------------------------------------------
    @property
    def config(self) -> StoreConfig:
        return self._config or StoreConfig()

    @property
    def exists(self) -> bool:
        """True once the store has a config (a writing command created it)."""
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
            cfg = cfg.replace(conditional_writes=ok)
        self._set_config(save_config(self.store, cfg))
        return self.config

    def replace_config(self, config: StoreConfig) -> StoreConfig:
        """Change an existing store's settings (``casstore init`` on an existing store)."""
        replace_config(self.store, config)
        self._set_config(load_config(self.store))
        return self.config

    def _set_config(self, cfg: StoreConfig | None) -> None:
        self._config = cfg
        self._refs = None  # built again with the new writer settings

    # -- refs ----------------------------------------------------------------------------
    @property
    def refs(self) -> RefStore:
        if self._refs is None:
            cfg = self.config
            self._refs = RefStore(
                self.store,
                single_writer=cfg.single_writer,
                conditional=cfg.conditional_writes is not False,
                actor=self.actor,
            )
        return self._refs

    # -- versions ------------------------------------------------------------------------
    def versions(self, model: str) -> list[Version]:
        """Every version of ``model``, oldest semantic version first."""
        return self.catalog.versions(model)

    def get_version(self, model: str, spec: str, *, request_key: str | None = None) -> Version:
        """A version by any form :func:`~casstore.repo.versioning.parse_spec` accepts: the
        full name, ``v1.2.0_YYYYMMDD_HHMMSS``, ``1.2.0``/``v1.2.0``, ``latest``, ``@REF``, or a
        bare ref name."""
        return self.catalog.get_version(model, spec, self.refs, request_key=request_key)

    # -- write sessions ------------------------------------------------------------------
    def in_session(self) -> bool:
        """True while this thread holds a write session (see :meth:`writing`)."""
        return getattr(self._local, "session", None) is not None

    @contextmanager
    def writing(self, kind: str) -> Iterator[Session]:
        """Hold a write session (re-entrant per thread) so GC never sweeps under a writer."""
        current = getattr(self._local, "session", None)
        if current is not None:
            yield current
            return
        with ExitStack() as stack:
            # on a remote store, whether the store has catalogs (every writer's first
            # question, asked once per process) is asked while the session is opened
            _, s = together(self.store, self.catalog.migrated,
                            lambda: stack.enter_context(self.leases.session(kind)))
            self._local.session = s
            try:
                yield s
            finally:
                self._local.session = None
