"""AzureBlobStore: Azure Blob Storage (``az://container/prefix``) with real compare-and-swap.

adlfs provides the credentials (``connection_string``, ``account_name`` + ``account_key``,
``sas_token``, service principal, or the ``AZURE_STORAGE_*`` variables) and the aio
``BlobServiceClient``; every operation here is one Blob REST call through that client:

* ``put_if_absent`` uploads with ``If-None-Match: *`` (``MatchConditions.IfMissing``): an
  existing blob answers 409 ``BlobAlreadyExists``;
* ``replace_if_match`` uploads with ``If-Match: <ETag>`` (``MatchConditions.IfNotModified``):
  a stale ETag answers 412 ``ConditionNotMet``; the token is the blob's ETag, and a download
  returns bytes and ETag from one response, so the pair is consistent;
* conditional uploads go out with the SDK's retries off (``retry_total=0``): a retried create
  whose first response was lost would answer "exists" for our own write. A transport failure
  surfaces as :class:`~casstore.errors.TransientBackendError`, and
  :class:`~casstore.store.RetryingStore` retries and confirms by content.

Blobs up to the SDK's single-put size (64 MiB) are one PUT; bigger ones are staged blocks
committed by one Put Block List, which is also atomic. Errors are translated in
:mod:`casstore.store._translate`.
"""

from __future__ import annotations

from typing import Any

from casstore.errors import NotFoundError
from casstore.store._object_api import ObjectApiStore
from casstore.store._util import shows_reserved
from casstore.store.base import Capabilities, ObjectInfo

AZURE_SCHEMES = ("az", "abfs", "abfss")
_NO_RETRY = {"retry_total": 0}


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def _container_missing(exc: BaseException) -> bool:
    return str(getattr(exc, "error_code", "") or "") == "ContainerNotFound"


class AzureBlobStore(ObjectApiStore):
    """An ObjectStore over one Azure Blob container (and an optional key prefix)."""

    def __init__(self, url: str, *, fs: Any = None, **storage_options: Any) -> None:
        if fs is None:
            from adlfs import AzureBlobFileSystem

            # abfs://container@ACCOUNT.dfs.core.windows.net/... names the account in the URL
            url_options = AzureBlobFileSystem._get_kwargs_from_urls(url)
            storage_options = {"use_listings_cache": False, **url_options, **storage_options}
            fs = AzureBlobFileSystem(**storage_options)
        super().__init__(url, fs=fs)
        container, _, prefix = self.root.partition("/")
        self._container, self._prefix = container, f"{prefix}/" if prefix else ""
        self.capabilities = Capabilities(True, True, concurrent_io=16)

    def _blob(self, key: str) -> Any:
        return self.fs.service_client.get_blob_client(self._container, self._prefix + key)

    def _not_found(self, exc: BaseException, key: str) -> NotFoundError:
        if _container_missing(exc):
            return NotFoundError(f"the container does not exist: az://{self._container}")
        return NotFoundError(f"object not found: {self._where(key)}")

    async def _get_object(
        self, key: str, start: int = 0, end: int | None = None
    ) -> tuple[bytes, str]:
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        length = None if end is None else end - start
        async with self._blob(key) as bc:
            try:
                offset = start if start or length is not None else None
                stream = await bc.download_blob(offset=offset, length=length)
            except ResourceNotFoundError as e:
                raise self._not_found(e, key) from e
            except HttpResponseError as e:
                if _status(e) == 416:  # the range starts past the end of an existing blob
                    return b"", ""
                raise
            return await stream.readall(), str(stream.properties.etag)

    async def _head(self, key: str) -> ObjectInfo | None:
        from azure.core.exceptions import ResourceNotFoundError

        async with self._blob(key) as bc:
            try:
                props = await bc.get_blob_properties()
            except ResourceNotFoundError as e:
                if _container_missing(e):
                    raise self._not_found(e, key) from e
                return None
        return ObjectInfo(key, int(props.size), props.last_modified.timestamp())

    async def _put_object(self, item: tuple[str, bytes]) -> str:
        key, data = item
        async with self._blob(key) as bc:
            out = await bc.upload_blob(data, overwrite=True)
        return str(out["etag"])

    async def _put_conditional(self, key: str, data: bytes, token: str | None) -> str | None:
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError

        cond: dict[str, Any] = {"match_condition": MatchConditions.IfMissing}
        if token is not None:
            cond = {"etag": token, "match_condition": MatchConditions.IfNotModified}
        async with self._blob(key) as bc:
            try:
                out = await bc.upload_blob(data, overwrite=True, **cond, **_NO_RETRY)
            except HttpResponseError as e:
                if _status(e) in (409, 412):
                    return None  # exists / stale ETag
                if _status(e) == 404 and token is not None and not _container_missing(e):
                    return None  # If-Match on a blob that is gone
                raise
        return str(out["etag"])

    async def _delete_object(self, key: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        async with self._blob(key) as bc:
            try:
                await bc.delete_blob()
            except ResourceNotFoundError as e:
                if _container_missing(e):
                    raise self._not_found(e, key) from e

    async def _list_page(
        self, prefix: str, page_token: str | None
    ) -> tuple[list[ObjectInfo], str | None]:
        cc = self.fs.service_client.get_container_client(self._container)
        blobs = cc.list_blobs(
            name_starts_with=self._prefix + prefix, results_per_page=self.list_page_size
        )
        pages = blobs.by_page(page_token)
        out = []
        async for blob in await pages.__anext__():
            key = blob.name[len(self._prefix) :]
            if key and not key.endswith("/") and shows_reserved(prefix, key):
                out.append(ObjectInfo(key, int(blob.size), blob.last_modified.timestamp()))
        return out, pages.continuation_token


__all__ = ["AZURE_SCHEMES", "AzureBlobStore"]
