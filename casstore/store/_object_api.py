"""ObjectApiStore: the shape shared by backends that make their own object-API requests.

Azure Blob and GCS each implement six async primitives (one request each: get, head, put,
conditional put, delete, one listing page); this base turns them into the ObjectStore
interface: it validates keys and ranges, runs the primitives on fsspec's event loop (batches
concurrently, ``capabilities.concurrent_io`` at a time) and translates every error in one place
(``FsspecStore._errors`` -> :mod:`casstore.store._translate`). The primitives never retry: a
transient failure surfaces as TransientBackendError and :class:`~casstore.store.RetryingStore`
retries, confirming uncertain conditional writes by content.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Mapping

from casstore.errors import BackendError, ConflictError, NotFoundError
from casstore.store._util import as_bytes, check_key, check_prefix, check_range
from casstore.store.base import ObjectInfo
from casstore.store.fsspec_store import FsspecStore


class ObjectApiStore(FsspecStore):
    """Base of :class:`~casstore.store.AzureBlobStore` and :class:`~casstore.store.GcsStore`."""

    #: objects per listing request (None: the service's default); tests set it small
    list_page_size: int | None = None

    # -- the primitives (one request each) -------------------------------------------------
    @abc.abstractmethod
    async def _get_object(
        self, key: str, start: int = 0, end: int | None = None
    ) -> tuple[bytes, str]:
        """Bytes [start, end) and the CAS token; NotFoundError if absent; ``b""`` for a range
        that starts past the end of an existing object."""

    @abc.abstractmethod
    async def _head(self, key: str) -> ObjectInfo | None:
        """Size and mtime, or None if the object is absent (NotFoundError if its bucket is)."""

    @abc.abstractmethod
    async def _put_object(self, item: tuple[str, bytes]) -> str:
        """Unconditional write of ``(key, data)``; the new token."""

    @abc.abstractmethod
    async def _put_conditional(self, key: str, data: bytes, token: str | None) -> str | None:
        """Write only if the current token is ``token`` (None: only if absent). The new token,
        or None if the precondition failed."""

    @abc.abstractmethod
    async def _delete_object(self, key: str) -> None:
        """Delete; an absent object is not an error."""

    @abc.abstractmethod
    async def _list_page(
        self, prefix: str, page_token: str | None
    ) -> tuple[list[ObjectInfo], str | None]:
        """One page of the objects under ``prefix`` (reserved folders filtered) and the
        token of the next page, None after the last."""

    # -- the interface -------------------------------------------------------------------
    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        s, e = check_range(start, end)
        check_key(key)
        if e is not None and s >= e:
            self.stat(key)  # still NotFoundError for a missing key
            return b""
        with self._errors("get", key):
            return self._run(self._get_object, key, s, e)[0]

    def get_with_token(self, key: str) -> tuple[bytes, str]:
        check_key(key)
        with self._errors("get", key):
            data, token = self._run(self._get_object, key)
        if not token:
            raise BackendError(f"get {self._where(key)}: the server sent no version token")
        return data, token

    def stat(self, key: str) -> ObjectInfo:
        check_key(key)
        with self._errors("stat", key):
            found = self._run(self._head, key)
        if found is None:
            raise NotFoundError(f"object not found: {self._where(key)}")
        return found

    def exists(self, key: str) -> bool:
        check_key(key)
        with self._errors("exists", key):  # a missing bucket raises, it is not "absent"
            return self._run(self._head, key) is not None

    def exists_many(self, keys: Iterable[str]) -> set[str]:
        keys = [check_key(k) for k in keys]
        with self._errors("exists"):
            found = self._run(self._gather, self._head, keys)
        return {k for k, info in zip(keys, found) if info is not None}

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        keys = [check_key(k) for k in keys]
        with self._errors("get_many"):
            results = self._run(self._gather, self._get_object, keys)
        return {k: r[0] for k, r in zip(keys, results)}

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        check_prefix(prefix)
        page_token: str | None = None
        while True:
            with self._errors("list", prefix):
                page, page_token = self._run(self._list_page, prefix, page_token)
            yield from page
            if not page_token:
                return

    def put(self, key: str, data: bytes | memoryview, *, sync: bool = True) -> None:
        item = (check_key(key), as_bytes(data))
        with self._errors("put", key):
            self._run(self._put_object, item)

    def put_many(self, items: Mapping[str, bytes | memoryview], *, sync: bool = True) -> None:
        batch = [(check_key(k), as_bytes(v)) for k, v in items.items()]
        with self._errors("put_many"):
            self._run(self._gather, self._put_object, batch)

    def put_if_absent(self, key: str, data: bytes | memoryview, *, sync: bool = True) -> bool:
        key, data = check_key(key), as_bytes(data)
        with self._errors("put_if_absent", key):
            return self._run(self._put_conditional, key, data, None) is not None

    def replace_if_match(self, key: str, data: bytes, token: str | None) -> str:
        key, data = check_key(key), as_bytes(data)
        with self._errors("replace_if_match", key):
            new = self._run(self._put_conditional, key, data, token)
        if new is None:
            raise ConflictError(
                f"compare-and-swap failed on {self._where(key)}: token {token!r} is stale"
            )
        return new

    def delete(self, key: str) -> None:
        check_key(key)
        with self._errors("delete", key):
            self._run(self._delete_object, key)

    def delete_many(self, keys: Iterable[str]) -> None:
        keys = [check_key(k) for k in keys]
        with self._errors("delete_many"):
            self._run(self._gather, self._delete_object, keys)


__all__ = ["ObjectApiStore"]
