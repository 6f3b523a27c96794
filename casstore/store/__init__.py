"""Object stores: the interface, the backends, the wrappers, and :func:`open_store`.

``open_store`` picks a backend from a URL or path:

* a plain path, ``~/path`` or ``file://…``  -> :class:`LocalStore` (the embedded default)
* ``memory://name``                         -> the process-wide :class:`MemoryStore` called
  ``name`` (so in-process callers, e.g. CLI tests, share it; atomic create and CAS)
* ``s3://bucket/prefix`` and any other fsspec URL -> :class:`FsspecStore`. S3 needs s3fs
  (``pip install casstore[s3]``); the endpoint comes from ``endpoint_url`` /
  ``client_kwargs={"endpoint_url": …}`` or ``$CASSTORE_S3_ENDPOINT_URL`` / ``$AWS_ENDPOINT_URL``.
  Use ``fsspec+memory://…`` (or ``FsspecStore("memory://…")``) for fsspec's memory filesystem.
* ``az://container/prefix`` (also ``abfs://``, ``abfss://``) -> :class:`AzureBlobStore` (adlfs,
  ``pip install casstore[azure]``; credentials as adlfs takes them, e.g.
  ``$AZURE_STORAGE_CONNECTION_STRING``)
* ``gs://bucket/prefix`` (also ``gcs://``) -> :class:`GcsStore` (gcsfs,
  ``pip install casstore[gcs]``; ``$STORAGE_EMULATOR_HOST`` or ``endpoint_url`` for emulators)
"""

from __future__ import annotations

import os
from typing import Any

from casstore.errors import InvalidInputError, UnsupportedError
from casstore.store.base import Capabilities, ObjectInfo, ObjectStore
from casstore.store.local import LocalStore
from casstore.store.memory import MemoryStore
from casstore.store.probe import probe_conditional_writes
from casstore.store.wrappers import ReadOnlyStore, RetryingStore, WrappingStore


def open_store(
    url_or_path: str | os.PathLike[str], *, retry: bool = True, **storage_options: Any
) -> ObjectStore:
    """Open the store at ``url_or_path`` (see the module docstring for the rules).

    Remote (fsspec) stores come wrapped in :class:`RetryingStore` unless ``retry=False``:
    transient failures are retried with backoff, uncertain conditional writes confirmed.
    """
    if isinstance(url_or_path, os.PathLike):
        url_or_path = os.fspath(url_or_path)
    if not isinstance(url_or_path, str) or not url_or_path.strip() or "\x00" in url_or_path:
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
    store: ObjectStore = _remote_class(scheme, url)(url, **storage_options)
    return RetryingStore(store) if retry else store


_BACKENDS = {
    # scheme: (module to import first, extra to install, store module, store class)
    "s3": ("s3fs", "s3", "fsspec_store", "FsspecStore"),
    "s3a": ("s3fs", "s3", "fsspec_store", "FsspecStore"),
    "az": ("adlfs", "azure", "azure", "AzureBlobStore"),
    "abfs": ("adlfs", "azure", "azure", "AzureBlobStore"),
    "abfss": ("adlfs", "azure", "azure", "AzureBlobStore"),
    "gs": ("gcsfs", "gcs", "gcs", "GcsStore"),
    "gcs": ("gcsfs", "gcs", "gcs", "GcsStore"),
}


def _remote_class(scheme: str, url: str) -> type[ObjectStore]:
    import importlib

    needs, extra, module, cls = _BACKENDS.get(scheme, ("fsspec", "", "fsspec_store", "FsspecStore"))
    try:
        importlib.import_module(needs)
    except ImportError as e:
        raise UnsupportedError(
            f"{url}: {scheme}:// support needs {needs}; run: pip install casstore[{extra}]"
        ) from e
    return getattr(importlib.import_module(f"casstore.store.{module}"), cls)


_LAZY = {"FsspecStore": "fsspec_store", "AzureBlobStore": "azure", "GcsStore": "gcs"}


def __getattr__(name: str) -> Any:
    # fsspec (and asyncio under it) is imported only when a remote store is used
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"casstore.store.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AzureBlobStore",
    "Capabilities",
    "FsspecStore",
    "GcsStore",
    "LocalStore",
    "MemoryStore",
    "ObjectInfo",
    "ObjectStore",
    "ReadOnlyStore",
    "RetryingStore",
    "WrappingStore",
    "open_store",
    "probe_conditional_writes",
]
