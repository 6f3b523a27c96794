"""GcsStore: Google Cloud Storage (``gs://bucket/prefix``) with real compare-and-swap.

gcsfs provides the credentials, the endpoint (``endpoint_url`` or ``$STORAGE_EMULATOR_HOST``)
and the aiohttp session; every operation here is one request of the GCS JSON API made through
that session, so casstore decides which requests carry preconditions:

* every write is one *multipart* upload (metadata + bytes in one request, atomic); the token
  is the object's generation;
* ``put_if_absent`` sends ``ifGenerationMatch=0`` and ``replace_if_match`` sends
  ``ifGenerationMatch=<generation>``: HTTP 412 means the precondition failed. Only multipart
  uploads are used because some emulators (fake-gcs-server) ignore preconditions on media and
  resumable uploads;
* a download returns bytes and ``x-goog-generation`` in one response (a consistent pair);
* an upload that fails on its connection is sent again once, on a fresh one, as aiohttp
  does by itself for idempotent methods but not for POST (every upload): a plain upload
  always (it is idempotent), a conditional one only when its body could not be written (the
  server never received it: :func:`_unsent`); a pooled keep-alive connection the server
  had closed fails like that;
* no other request is retried here: transient failures surface as
  :class:`~casstore.errors.TransientBackendError` and :class:`~casstore.store.RetryingStore`
  retries and confirms uncertain conditional writes by content.

gcsfs's core ``GCSFileSystem`` class is used (never the experimental zonal/HNS subclass, which
probes gRPC endpoints first). Set ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` to keep gcsfs
from even importing that layer. Errors are translated in :mod:`casstore.store._translate`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from casstore.errors import NotFoundError
from casstore.store._object_api import ObjectApiStore
from casstore.store._util import shows_reserved
from casstore.store.base import Capabilities, ObjectInfo

GCS_SCHEMES = ("gs", "gcs")


class GcsHttpError(Exception):
    """A GCS JSON API answer that was not expected; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


def _timestamp(text: str | None) -> float:
    if not text:
        return 0.0
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _unsent(e: Exception) -> bool:
    """The request's body could not be written (typically a pooled keep-alive connection the
    server had closed as it was reused): the server cannot have acted on an upload it did
    not receive whole, so a conditional upload may be sent again. Any other failure of a
    conditional upload (the connection lost after the request went out) is uncertain: it
    surfaces as TransientBackendError, and RetryingStore confirms it by content."""
    return "Can not write request body" in str(e)  # aiohttp's words for it


class GcsStore(ObjectApiStore):
    """An ObjectStore over one GCS bucket (and an optional key prefix)."""

    def __init__(self, url: str, *, fs: Any = None, **storage_options: Any) -> None:
        if fs is None:
            from gcsfs.core import GCSFileSystem

            if os.environ.get("STORAGE_EMULATOR_HOST") or storage_options.get("endpoint_url"):
                storage_options.setdefault("token", "anon")  # emulators take no credentials
            fs = GCSFileSystem(**storage_options)
        super().__init__(url, fs=fs)
        bucket, _, prefix = self.root.partition("/")
        self._bucket, self._prefix = bucket, f"{prefix}/" if prefix else ""
        self._bucket_seen = False
        self.capabilities = Capabilities(True, True, concurrent_io=16)

    # -- requests ------------------------------------------------------------------------
    def _object_url(self, key: str) -> str:
        name = quote(self._prefix + key, safe="")
        return f"{self.fs._location}/storage/v1/b/{quote(self._bucket)}/o/{name}"

    async def _request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        data: Any = None,
        ok: tuple[int, ...] = (200,),
    ) -> tuple[int, Mapping[str, str], bytes]:
        session = await self.fs._set_session()
        async with session.request(
            method, url, params=params, headers=self.fs._get_headers(headers), data=data
        ) as r:
            body = await r.read()
            if r.status not in ok:
                raise GcsHttpError(r.status, body[:300].decode("utf-8", "replace"))
            return r.status, r.headers, body

    async def _check_bucket(self) -> None:
        """A 404 does not say whether the object or the bucket is missing: ask once."""
        if not self._bucket_seen:
            url = f"{self.fs._location}/storage/v1/b/{quote(self._bucket)}"
            status, _, _ = await self._request("GET", url, ok=(200, 404))
            if status == 404:
                raise NotFoundError(f"the bucket does not exist: gs://{self._bucket}")
            self._bucket_seen = True

    async def _get_object(
        self, key: str, start: int = 0, end: int | None = None
    ) -> tuple[bytes, str]:
        headers = {}
        if start or end is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        status, h, body = await self._request(
            "GET", self._object_url(key), params={"alt": "media"}, headers=headers,
            ok=(200, 206, 404, 416),
        )  # fmt: skip
        if status == 404:
            await self._check_bucket()
            raise NotFoundError(f"object not found: {self._where(key)}")
        if status == 416:  # a range starting at or past the end of the object
            return b"", ""
        generation = h.get("x-goog-generation", "")
        return body, generation

    async def _head(self, key: str) -> ObjectInfo | None:
        status, _, body = await self._request("GET", self._object_url(key), ok=(200, 404))
        if status == 404:
            await self._check_bucket()
            return None
        meta = json.loads(body)
        return ObjectInfo(key, int(meta.get("size", 0)), _timestamp(meta.get("updated")))

    async def _upload(self, key: str, data: bytes, generation: str | None) -> str | None:
        """One multipart upload, with ``ifGenerationMatch`` unless ``generation`` is None.
        The new generation, or None if the precondition failed."""
        import aiohttp

        url = f"{self.fs._location}/upload/storage/v1/b/{quote(self._bucket)}/o"
        params = {"uploadType": "multipart"}
        if generation is not None:
            params["ifGenerationMatch"] = generation
        for attempt in (1, 2):
            with aiohttp.MultipartWriter("related") as body:
                body.append_json({"name": self._prefix + key})
                body.append(data, {"Content-Type": "application/octet-stream"})
            try:
                status, _, out = await self._request(
                    "POST", url, params=params, data=body, ok=(200, 404, 412)
                )
                break
            except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError) as e:
                # a plain upload is idempotent (aiohttp itself sends a PUT again on a
                # connection that failed); a conditional one only if it never left
                if attempt == 2 or (generation is not None and not _unsent(e)):
                    raise
        if status == 404:
            await self._check_bucket()
            if generation in (None, "0"):
                raise GcsHttpError(404, f"upload to {self._where(key)} answered 404")
            return None  # the object we meant to replace is gone
        if status == 412:
            return None
        return str(json.loads(out)["generation"])

    async def _put_object(self, item: tuple[str, bytes]) -> str:
        new = await self._upload(item[0], item[1], None)
        assert new is not None  # no precondition, so none failed
        return new

    async def _put_conditional(self, key: str, data: bytes, token: str | None) -> str | None:
        return await self._upload(key, data, "0" if token is None else token)

    async def _delete_object(self, key: str) -> None:
        status, _, _ = await self._request("DELETE", self._object_url(key), ok=(200, 204, 404))
        if status == 404:
            await self._check_bucket()  # a missing object is fine, a missing bucket is not

    async def _list_page(
        self, prefix: str, page_token: str | None
    ) -> tuple[list[ObjectInfo], str | None]:
        url = f"{self.fs._location}/storage/v1/b/{quote(self._bucket)}/o"
        params = {"prefix": self._prefix + prefix}
        if page_token:
            params["pageToken"] = page_token
        if self.list_page_size:
            params["maxResults"] = str(self.list_page_size)
        status, _, body = await self._request("GET", url, params=params, ok=(200, 404))
        if status == 404:
            raise NotFoundError(f"the bucket does not exist: gs://{self._bucket}")
        page = json.loads(body)
        out = []
        for item in page.get("items", ()):
            key = item["name"][len(self._prefix) :]
            if key and not key.endswith("/") and shows_reserved(prefix, key):
                out.append(
                    ObjectInfo(key, int(item.get("size", 0)), _timestamp(item.get("updated")))
                )
        return out, page.get("nextPageToken")


__all__ = ["GCS_SCHEMES", "GcsHttpError", "GcsStore"]
