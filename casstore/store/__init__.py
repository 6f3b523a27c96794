"""Object stores: the interface, the backends, the wrappers, and :func:`open_store`.

``open_store`` picks a backend from a URL or path:

* a plain path, ``~/path`` or ``file://…``  -> :class:`LocalStore` (the embedded default)
* ``memory://name``                         -> the process-wide :class:`MemoryStore` called
  ``name`` (so in-process callers, e.g. CLI tests, share it; atomic create and CAS)
* ``s3://bucket/prefix`` and any other fsspec URL -> :class:`FsspecStore`. S3 needs s3fs
  (``pip install casstore[s3]``); the endpoint comes from ``endpoint_url`` /
  ``client_kwargs={"endpoint_url": …}`` or ``$CASSTORE_S3_ENDPOINT_URL`` / ``$AWS_ENDPOINT_URL``.
  Use ``fsspec+memory://…`` (or ``FsspecStore("memory://…")``) for fsspec's memory filesystem.
"""

from __future__ import annotations

import os
from typing import Any

from casstore.errors import InvalidInputError, UnsupportedError
from casstore.store.base import Capabilities, ObjectInfo, ObjectStore
from casstore.store.local import LocalStore
from casstore.store.memory import MemoryStore
from casstore.store.probe import probe_conditional_writes
from casstore.store.wrappers import (
    CountingStore,
    FaultInjectingStore,
    OpCount,
    ReadOnlyStore,
    RetryingStore,
    WrappingStore,
)


def open_store(
    url_or_path: str | os.PathLike[str], *, retry: bool = True, **storage_options: Any
) -> ObjectStore:
    """Open the store at ``url_or_path`` (see the module docstring for the rules).

    Remote (fsspec) stores come wrapped in :class:`RetryingStore` unless ``retry=False``:
    transient failures are retried with backoff, uncertain conditional writes confirmed.
    """
    if isinstance(url_or_path, os.PathLike):
        url_or_path = os.fspath(url_or_path)
    if not isinstance(url_or_path, str) or not url_or_path.strip():
        raise InvalidInputError(f"not a store location: {url_or_path!r}")
    url = url_or_path
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("", "file", "local"):
        if storage_options:
            raise InvalidInputError(
                f"a local store takes no storage options, got {sorted(storage_options)}"
            )
        path = url.split("://", 1)[1] if scheme else url
        return LocalStore(os.path.expanduser(path))
    if scheme == "memory":
        return MemoryStore.named(url.split("://", 1)[1].strip("/"))
    if scheme.startswith("fsspec+"):
        url = url[len("fsspec+") :]
    if scheme in ("s3", "s3a"):
        try:
            import s3fs  # noqa: F401
        except ImportError as e:
            raise UnsupportedError(
                f"{url}: S3 support needs s3fs; run: pip install casstore[s3]"
            ) from e
    from casstore.store.fsspec_store import FsspecStore

    store: ObjectStore = FsspecStore(url, **storage_options)
    return RetryingStore(store) if retry else store


def __getattr__(name: str) -> Any:
    # fsspec (and asyncio under it) is imported only when a remote store is used
    if name == "FsspecStore":
        from casstore.store.fsspec_store import FsspecStore

        return FsspecStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Capabilities",
    "CountingStore",
    "FaultInjectingStore",
    "FsspecStore",
    "LocalStore",
    "MemoryStore",
    "ObjectInfo",
    "ObjectStore",
    "OpCount",
    "ReadOnlyStore",
    "RetryingStore",
    "WrappingStore",
    "open_store",
    "probe_conditional_writes",
]
