"""FsspecStore: any fsspec filesystem as an ObjectStore, with a native path for S3.

On S3 (s3fs) every operation is one S3 request made through s3fs's aiobotocore client:
``put_if_absent`` sends ``If-None-Match: *`` and ``replace_if_match`` sends ``If-Match: <ETag>``
(the token is the ETag), so both are atomic across machines; batches (``get_many``,
``exists_many``, ``put_many``) run concurrently on fsspec's event loop. A 412 means "lost the
race"; a 409 ConditionalRequestConflict is retried; when botocore retried a conditional PUT
(its first response may have been lost) the outcome is confirmed by reading the object back.
Some S3-compatible servers ignore preconditions: call :meth:`FsspecStore.probe_conditional_writes`.

Other fsspec backends (``memory://``, ``gs://``, ...) get the generic path: plain
``cat``/``pipe``/``ls`` calls and best-effort conditional writes (check, then write, under a
lock that only protects writers in this process); their capabilities say so (False/False).
Objects are ``put`` whole; their atomicity is that of the filesystem's ``pipe_file``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import os
import random
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from functools import partial
from typing import Any, TypeVar

import fsspec
import fsspec.asyn

from casstore.errors import (
    CasstoreError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    TransientBackendError,
    UnsupportedError,
)
from casstore.store._translate import client_error_info, translate_error
from casstore.store._util import (
    as_bytes,
    check_key,
    check_prefix,
    check_range,
    content_token,
    shows_reserved,
)
from casstore.store.base import Capabilities, ObjectInfo, ObjectStore

T = TypeVar("T")
ENDPOINT_ENV_VARS = ("CASSTORE_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
_CONFLICT_RETRIES = 6
CONNECT_TIMEOUT = 3.0
"""Seconds to wait for an S3 connection (botocore's default is 60, s3fs's 5)."""


def s3_storage_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """s3fs options with the endpoint resolved: ``endpoint_url`` or ``client_kwargs``
    from the caller first, then ``$CASSTORE_S3_ENDPOINT_URL``, ``$AWS_ENDPOINT_URL_S3``,
    ``$AWS_ENDPOINT_URL``. Listing caches are off unless asked for (never stale)."""
    opts = dict(options)
    client_kwargs = dict(opts.get("client_kwargs") or {})
    endpoint = opts.pop("endpoint_url", None) or client_kwargs.pop("endpoint_url", None)
    endpoint = endpoint or next(
        (os.environ[v] for v in ENDPOINT_ENV_VARS if os.environ.get(v)), None
    )
    if endpoint:
        opts["endpoint_url"] = endpoint
    if client_kwargs:
        opts["client_kwargs"] = client_kwargs
    opts.setdefault("use_listings_cache", False)
    config = dict(opts.get("config_kwargs") or {})
    config.setdefault("max_pool_connections", 32)  # matches capabilities.concurrent_io
    # RetryingStore is the one retry layer: botocore does not retry, s3fs tries once (see
    # FsspecStore), so a dead endpoint fails in seconds instead of 5 x 5 x 5 tries
    config.setdefault("connect_timeout", CONNECT_TIMEOUT)
    config.setdefault("retries", {"total_max_attempts": 1})
    opts["config_kwargs"] = config
    return opts


def _protocols(fs: Any) -> tuple[str, ...]:
    return tuple(fs.protocol) if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)


def _is_s3(fs: Any) -> bool:
    return "s3" in _protocols(fs) and hasattr(fs, "_call_s3")


class _SharedBody(io.BytesIO):
    """A PUT body over bytes that aiohttp sizes without copying them. botocore hands a bytes
    body to aiohttp as a ``BytesIO`` of it, and aiohttp sizes a ``BytesIO`` with
    ``getbuffer()``, which un-shares (copies) the bytes it was made from: every object in
    flight was held twice (a push's batch of 13 MiB of chunks: 13 MiB of copies)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self._data = data

    def getbuffer(self) -> memoryview:
        return memoryview(self._data)  # read-only: only its length is asked for


def _share_body(params: dict[str, Any], **_: Any) -> None:
    """botocore's own conversion of a bytes body (registered first, so botocore's sees a
    file-like body and leaves it), made anew for every call, retries included."""
    if isinstance(params.get("Body"), bytes):
        params["Body"] = _SharedBody(params["Body"])


def _mtime(info: Mapping[str, Any]) -> float:
    for name in ("mtime", "LastModified", "updated", "created", "last_modified"):
        value = info.get(name)
        if value is None:
            continue
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
        with contextlib.suppress(TypeError, ValueError):
            return float(value)
    return 0.0


class FsspecStore(ObjectStore):
    """An ObjectStore over ``fsspec.url_to_fs(url, **storage_options)`` (or a given ``fs``)."""

    def __init__(self, url: str, *, fs: Any = None, **storage_options: Any) -> None:
        url = os.fspath(url).rstrip("/")
        if fs is None:
            if url.split("://", 1)[0] in ("s3", "s3a"):
                storage_options = s3_storage_options(storage_options)
            try:
                fs, root = fsspec.url_to_fs(url, **storage_options)
            except ImportError as e:
                raise UnsupportedError(
                    f"cannot open {url}: {e}. For S3 run: pip install casstore[s3]"
                ) from e
            except ValueError as e:  # fsspec: "Protocol not known", malformed URL
                raise InvalidInputError(f"cannot open {url}: {e}") from e
        else:
            root = fs._strip_protocol(url)
        self.fs = fs
        self.url = url
        self.root = root.rstrip("/")
        self._s3 = _is_s3(fs)
        self._lock = threading.Lock()  # best-effort conditional writes (generic path)
        if self._s3:
            fs.retries = 1  # s3fs's own retry loop: RetryingStore retries instead
            bucket, _, prefix = self.root.partition("/")
            self._bucket, self._prefix = bucket, f"{prefix}/" if prefix else ""
            self._bucket_seen = False
            self.capabilities = Capabilities(True, True, concurrent_io=32)
        else:
            self.capabilities = Capabilities(False, False, concurrent_io=8)

    # -- plumbing ------------------------------------------------------------------------
    def _path(self, key: str) -> str:
        return f"{self.root}/{check_key(key)}"

    def _where(self, key: str) -> str:
        return f"{self.url}/{key}"

    @contextlib.contextmanager
    def _errors(self, op: str, key: str = "") -> Iterator[None]:
        try:
            yield
        except CasstoreError:
            raise
        except Exception as e:
            raise translate_error(e, op=op, where=self._where(key) if key else self.url) from e

    def _run(self, coro_fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        return fsspec.asyn.sync(self.fs.loop, coro_fn, *args, **kwargs)

    async def _gather(self, fn: Callable[[Any], Awaitable[T]], items: Iterable[Any]) -> list[T]:
        sem = asyncio.Semaphore(self.capabilities.concurrent_io)

        async def one(item: Any) -> T:
            async with sem:
                return await fn(item)

        results = await asyncio.gather(*(one(i) for i in items), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return results  # type: ignore[return-value]

    def _invalidate(self, key: str) -> None:
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache(self._path(key))

    # -- S3 requests ---------------------------------------------------------------------
    async def _s3_get(self, key: str, rng: str | None = None, *, into_buffer: bool = False
                      ) -> tuple[bytes, str]:
        extra = {"Range": rng} if rng else {}
        resp = await self.fs._call_s3(
            "get_object", Bucket=self._bucket, Key=self._prefix + key, **extra
        )
        try:
            length = resp.get("ContentLength") if into_buffer else None
            body = await (_read_into_buffer(resp["Body"], length) if length is not None
                          else resp["Body"].read())
        finally:
            resp["Body"].close()
        return body, resp["ETag"]

    async def _s3_head(self, key: str) -> ObjectInfo | None:
        try:
            out = await self.fs._call_s3("head_object", Bucket=self._bucket, Key=self._prefix + key)
        except Exception as e:
            info = client_error_info(e)
            if info is None or info[1] != 404:
                raise
            await self._s3_check_bucket()
            return None
        return ObjectInfo(key, int(out["ContentLength"]), _mtime(out))

    async def _s3_check_bucket(self) -> None:
        """A HEAD 404 does not say whether the key or the bucket is missing: ask once."""
        if not self._bucket_seen:
            try:
                await self.fs._call_s3("head_bucket", Bucket=self._bucket)
            except Exception as e:
                info = client_error_info(e)
                if info is not None and info[1] == 404:
                    raise NotFoundError(f"the bucket does not exist: s3://{self._bucket}") from e
                raise
            self._bucket_seen = True

    async def _s3_client(self) -> Any:
        """The bucket's client, with :func:`_share_body` registered on it (once: the id
        makes a second registration a no-op)."""
        await self.fs.set_session()
        client = await self.fs.get_s3(self._bucket)
        client.meta.events.register_first("before-parameter-build.s3.PutObject", _share_body,
                                          unique_id="casstore-share-body")
        return client

    async def _s3_put(self, item: tuple[str, bytes]) -> str:
        key, data = item
        await self._s3_client()
        out = await self.fs._call_s3(
            "put_object", Bucket=self._bucket, Key=self._prefix + key, Body=data
        )
        return str(out.get("ETag", ""))

    async def _s3_put_cond(self, key: str, data: bytes, cond: dict[str, str]) -> str | None:
        """PUT with a precondition. The new ETag, or None if the precondition failed.

        Goes to the aiobotocore client directly: s3fs's own retry loop would turn a lost
        response into a 412 on the retry. botocore's retries show in ``RetryAttempts``; then a
        412 may be our own earlier attempt, so we read back and compare bytes.
        """
        client = await self._s3_client()
        uncertain = False
        for attempt in range(_CONFLICT_RETRIES):
            try:
                out = await client.put_object(
                    Bucket=self._bucket,
                    Key=self._prefix + key,
                    Body=data,
                    **self.fs.s3_additional_kwargs,
                    **cond,
                )
                return str(out["ETag"])
            except Exception as e:
                response = getattr(e, "response", None) or {}
                retried = (response.get("ResponseMetadata") or {}).get("RetryAttempts", 0) > 0
                uncertain = uncertain or retried
                code, status, _ = client_error_info(e) or ("", None, "")
                precondition = status == 412 or (status == 404 and "IfMatch" in cond)
                if precondition:
                    break
                if code != "ConditionalRequestConflict" and status != 409:
                    raise
                await asyncio.sleep(0.02 * 2**attempt * (0.5 + random.random()))
        else:
            raise TransientBackendError(
                f"conditional put {self._where(key)}: conflicting requests kept failing (409)"
            )
        if uncertain:
            with contextlib.suppress(NotFoundError):
                current, etag = await self._s3_get(key)
                if current == data:
                    return etag
        return None

    # -- reads ---------------------------------------------------------------------------
    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        s, e = check_range(start, end)
        path = self._path(key)
        if e is not None and s >= e:
            self.stat(key)  # still NotFoundError for a missing key
            return b""
        with self._errors("get", key):
            if not self._s3:
                return bytes(self.fs.cat_file(path, start=s or None, end=e))
            rng = None if s == 0 and e is None else f"bytes={s}-{'' if e is None else e - 1}"
            try:
                return self._run(self._s3_get, key, rng)[0]
            except Exception as exc:
                if (client_error_info(exc) or ("",))[0] != "InvalidRange":
                    raise
        self.stat(key)  # a range past the end of an existing object reads as b""
        return b""

    def get_with_token(self, key: str) -> tuple[bytes, str]:
        path = self._path(key)
        with self._errors("get", key):
            if self._s3:
                return self._run(self._s3_get, key)
            data = bytes(self.fs.cat_file(path))
        return data, content_token(data)

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        with self._errors("stat", key):
            if self._s3:
                found = self._run(self._s3_head, key)
            else:
                info = self.fs.info(path)
                found = (
                    None
                    if info.get("type") != "file"
                    else ObjectInfo(key, int(info["size"]), _mtime(info))
                )
        if found is None:
            raise NotFoundError(f"object not found: {self._where(key)}")
        return found

    def exists(self, key: str) -> bool:
        if not self._s3:
            return super().exists(key)
        check_key(key)
        with self._errors("exists", key):  # a missing bucket raises, it is not "absent"
            return self._run(self._s3_head, key) is not None

    def exists_many(self, keys: Iterable[str]) -> set[str]:
        keys = [check_key(k) for k in keys]
        if not self._s3:
            return super().exists_many(keys)
        with self._errors("exists"):
            found = self._run(self._gather, self._s3_head, keys)
        return {k for k, info in zip(keys, found) if info is not None}

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        keys = [check_key(k) for k in keys]
        with self._errors("get_many"):
            if self._s3:
                results = self._run(self._gather, partial(self._s3_get, into_buffer=True), keys)
                return {k: r[0] for k, r in zip(keys, results)}
            paths = [self._path(k) for k in keys]
            out = self.fs.cat_ranges(paths, [None] * len(paths), [None] * len(paths))
        for k, v in zip(keys, out):
            if isinstance(v, BaseException):
                raise translate_error(v, op="get_many", where=self._where(k)) from v
        return {k: bytes(v) for k, v in zip(keys, out)}

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        check_prefix(prefix)
        return self._s3_list(prefix) if self._s3 else self._walk(prefix)

    def _s3_list(self, prefix: str) -> Iterator[ObjectInfo]:
        kw: dict[str, Any] = {"Bucket": self._bucket, "Prefix": self._prefix + prefix}
        while True:
            with self._errors("list", prefix):
                page = self._run(self.fs._call_s3, "list_objects_v2", **kw)
            for obj in page.get("Contents", ()):
                key = obj["Key"][len(self._prefix) :]
                if key and not key.endswith("/") and shows_reserved(prefix, key):
                    yield ObjectInfo(key, int(obj["Size"]), _mtime(obj))
            if not page.get("IsTruncated"):
                return
            kw["ContinuationToken"] = page["NextContinuationToken"]

    def _walk(self, prefix: str) -> Iterator[ObjectInfo]:
        dir_part, _, name_part = prefix.rpartition("/")
        stack = [(f"{self.root}/{dir_part}" if dir_part else self.root, name_part, True)]
        while stack:
            directory, name_prefix, top = stack.pop()
            with self._errors("list", prefix):
                self.fs.invalidate_cache(directory)
                try:
                    entries = self.fs.ls(directory, detail=True)
                except FileNotFoundError:
                    if top:
                        return  # a genuinely missing directory: no objects
                    continue  # removed while we listed
            for info in entries:
                path = self.fs._strip_protocol(info["name"]).rstrip("/")
                name = path.rsplit("/", 1)[-1]
                if path == directory or not name.startswith(name_prefix):
                    continue
                key = path[len(self.root) + 1 :]
                if info.get("type") == "directory":
                    if shows_reserved(prefix, f"{key}/x"):
                        stack.append((path, "", False))
                elif shows_reserved(prefix, key):
                    yield ObjectInfo(key, int(info.get("size") or 0), _mtime(info))

    # -- writes --------------------------------------------------------------------------
    def _generic_put(self, path: str, data: bytes) -> None:
        if "file" in _protocols(self.fs):
            self.fs.makedirs(self.fs._parent(path), exist_ok=True)
        self.fs.pipe_file(path, data)

    def put(self, key: str, data: bytes | memoryview, *, sync: bool = True) -> None:
        path, data = self._path(key), as_bytes(data)
        with self._errors("put", key):
            if self._s3:
                self._run(self._s3_put, (key, data))
            else:
                self._generic_put(path, data)
        self._invalidate(key)

    def put_many(self, items: Mapping[str, bytes | memoryview], *, sync: bool = True) -> None:
        batch = {check_key(k): as_bytes(v) for k, v in items.items()}
        with self._errors("put_many"):
            if self._s3:
                self._run(self._gather, self._s3_put, list(batch.items()))
            elif "file" in _protocols(self.fs):
                super().put_many(batch, sync=sync)
            else:
                self.fs.pipe({self._path(k): v for k, v in batch.items()})
        for k in batch:
            self._invalidate(k)

    def put_if_absent(self, key: str, data: bytes | memoryview, *, sync: bool = True) -> bool:
        path, data = self._path(key), as_bytes(data)
        with self._errors("put_if_absent", key):
            if self._s3:
                created = self._run(self._s3_put_cond, key, data, {"IfNoneMatch": "*"}) is not None
            else:
                with self._lock:
                    created = not self.fs.exists(path)
                    if created:
                        self._generic_put(path, data)
        self._invalidate(key)
        return created

    def replace_if_match(self, key: str, data: bytes, token: str | None) -> str:
        path, data = self._path(key), as_bytes(data)
        with self._errors("replace_if_match", key):
            if self._s3:
                cond = {"IfNoneMatch": "*"} if token is None else {"IfMatch": token}
                new = self._run(self._s3_put_cond, key, data, cond)
            else:
                with self._lock:
                    try:
                        current: str | None = content_token(bytes(self.fs.cat_file(path)))
                    except FileNotFoundError:
                        current = None
                    new = None
                    if current == token:
                        self._generic_put(path, data)
                        new = content_token(data)
        self._invalidate(key)
        if new is None:
            raise ConflictError(
                f"compare-and-swap failed on {self._where(key)}: token {token!r} is stale"
            )
        return new

    def delete(self, key: str) -> None:
        path = self._path(key)
        with self._errors("delete", key):
            if self._s3:
                self._run(
                    self.fs._call_s3, "delete_object", Bucket=self._bucket, Key=self._prefix + key
                )
            else:
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(path)
        self._invalidate(key)

    def delete_many(self, keys: Iterable[str]) -> None:
        keys = [check_key(k) for k in keys]
        if not self._s3:
            return super().delete_many(keys)
        for i in range(0, len(keys), 1000):
            batch = keys[i : i + 1000]
            objects = [{"Key": self._prefix + k} for k in batch]
            with self._errors("delete_many"):
                out = self._run(
                    self.fs._call_s3,
                    "delete_objects",
                    Bucket=self._bucket,
                    Delete={"Objects": objects, "Quiet": True},
                )
            for k in batch:
                self._invalidate(k)
            errors = [e for e in out.get("Errors", ()) if e.get("Code") != "NoSuchKey"]
            if errors:
                e = errors[0]
                raise translate_error(
                    _ResponseError(e.get("Code", ""), e.get("Message", "")),
                    op="delete_many",
                    where=f"{self.url}/{e.get('Key', '')[len(self._prefix) :]}",
                )
        return None

    # -- probing -------------------------------------------------------------------------
    def probe_conditional_writes(self) -> bool:
        """Check once that the server honours preconditions (see :mod:`.probe`). On failure
        the store's capabilities drop to best effort, so multi-writer code can refuse it."""
        from casstore.store.probe import probe_conditional_writes

        ok = probe_conditional_writes(self)
        if not ok:
            self.capabilities = dataclasses.replace(
                self.capabilities, atomic_create=False, conditional_replace=False
            )
        return ok


async def _read_into_buffer(stream: Any, length: int) -> bytes:
    """A response body read piece by piece into one ``bytearray`` of its announced length.

    ``read()`` of the whole body keeps every piece aiohttp received until the last, then joins
    them: twice the body in memory at the end of each response, and ``get_many`` has a batch
    of them in flight. Read here, each piece is copied in as it arrives and dropped. The last
    read returns nothing, so botocore checks the length (and a checksum the server sent)."""
    buf = bytearray(length)
    view, got = memoryview(buf), 0
    while got < length:
        piece = await stream.read(min(length - got, _BODY_PIECE))
        if not piece:
            break
        view[got:got + len(piece)] = piece
        got += len(piece)
    if got != length or await stream.read(_BODY_PIECE):
        raise TransientBackendError(
            f"response body of {got}+ bytes, {length} announced: connection cut short")
    return buf  # type: ignore[return-value]


_BODY_PIECE = 1 << 20


class _ResponseError(Exception):
    """A per-key error inside a successful batch response, shaped like a ClientError."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.response = {"Error": {"Code": code, "Message": message}}


__all__ = ["ENDPOINT_ENV_VARS", "FsspecStore", "s3_storage_options"]
