"""The one place where botocore, azure-core, aiohttp and fsspec errors become casstore errors.

Third-party exception classes are recognised by name along their MRO (and HTTP statuses by
attribute: ``status`` for aiohttp, ``status_code`` for azure-core), so this module imports
none of those libraries (all are optional).
"""

from __future__ import annotations

import asyncio
from typing import Any

from casstore.errors import (
    BackendError,
    CasstoreError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    TransientBackendError,
)

_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "AccountProblem",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "RequestTimeTooSkewed",
        "SignatureDoesNotMatch",
        "TokenRefreshRequired",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "ConditionalRequestConflict",
        "InternalError",
        "OperationAborted",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequests",
    }
)
_NO_CREDENTIALS = frozenset({"NoCredentialsError", "PartialCredentialsError", "NoAuthTokenError"})
_TRANSIENT_CLASSES = frozenset(
    {
        # botocore: every connection / timeout error derives from HTTPClientError
        "HTTPClientError",
        "EndpointConnectionError",
        "ResponseStreamingError",
        "IncompleteReadError",
        # aiohttp
        "ClientConnectionError",
        "ClientPayloadError",
        "ServerTimeoutError",
        "ServerDisconnectedError",
        # fsspec
        "FSTimeoutError",
        # azure-core: no response, or a broken one
        "ServiceRequestError",
        "ServiceResponseError",
    }
)


def client_error_info(exc: BaseException) -> tuple[str, int | None, str] | None:
    """(code, HTTP status, message) of the botocore ClientError in ``exc``'s chain, if any.

    s3fs re-raises ClientErrors as builtin exceptions with the original as ``__cause__``.
    """
    seen = 0
    e: BaseException | None = exc
    while e is not None and seen < 8:
        response = getattr(e, "response", None)
        if isinstance(response, dict) and "Error" in response:
            err: dict[str, Any] = response.get("Error") or {}
            status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            return str(err.get("Code", "")), status, str(err.get("Message") or e)
        e = e.__cause__ or e.__context__
        seen += 1
    return None


def _class_names(exc: BaseException) -> set[str]:
    names: set[str] = set()
    e: BaseException | None = exc
    for _ in range(8):
        if e is None:
            break
        names.update(c.__name__ for c in type(e).__mro__)
        e = e.__cause__ or e.__context__
    return names


def translate_error(exc: BaseException, *, op: str, where: str) -> Exception:
    """Map any backend exception to the casstore tree. ``where`` names the object or store.

    An error is never turned into "missing" unless the backend said so (404 / NoSuchKey).
    """
    if isinstance(exc, CasstoreError):
        return exc
    info = client_error_info(exc)
    if info is not None:
        code, status, msg = info
        if code == "NoSuchBucket":
            return NotFoundError(f"{op} {where}: the bucket does not exist ({msg})")
        if code in ("NoSuchKey", "NotFound", "404") or status == 404:
            return NotFoundError(f"object not found: {where}")
        if code in _DENIED_CODES or status == 403:
            return PermissionDeniedError(f"{op} {where}: access denied ({code}: {msg})")
        if code == "PreconditionFailed" or status == 412:
            return ConflictError(f"{op} {where}: precondition failed ({msg})")
        if code in _TRANSIENT_CODES or status == 429 or (status or 0) >= 500:
            return TransientBackendError(f"{op} {where}: {code or status}: {msg}")
        return BackendError(f"{op} {where}: {code or status}: {msg}")
    names = _class_names(exc)
    if names & _NO_CREDENTIALS:
        return PermissionDeniedError(
            f"{op} {where}: no credentials found (set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or configure a profile)"
        )
    if getattr(exc, "error_code", None) == "ContainerNotFound":  # azure-core
        return NotFoundError(f"{op} {where}: the container does not exist")
    status = getattr(exc, "status", None)  # aiohttp.ClientResponseError and friends
    if not isinstance(status, int):
        status = getattr(exc, "status_code", None)  # azure-core HttpResponseError
    if isinstance(status, int):
        if status == 404:
            return NotFoundError(f"object not found: {where}")
        if status in (401, 403):
            return PermissionDeniedError(f"{op} {where}: access denied (HTTP {status})")
        if status == 412:
            return ConflictError(f"{op} {where}: precondition failed")
        if status in (408, 429) or status >= 500:
            return TransientBackendError(f"{op} {where}: HTTP {status}: {exc}")
    if names & _TRANSIENT_CLASSES or isinstance(
        exc, (TimeoutError, ConnectionError, asyncio.TimeoutError)
    ):
        return TransientBackendError(f"{op} {where}: {type(exc).__name__}: {exc}")
    if isinstance(exc, FileNotFoundError):
        return NotFoundError(f"object not found: {where}")
    if isinstance(exc, PermissionError):
        return PermissionDeniedError(f"{op} {where}: access denied ({exc})")
    if isinstance(exc, OSError) and exc.errno is not None:
        return BackendError(exc.errno, f"{op} {where}: {exc.strerror or exc}")
    return BackendError(f"{op} {where}: {type(exc).__name__}: {exc}")
