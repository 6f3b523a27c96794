"""AzureBlobStore on Azurite over real HTTP: the conformance suite, errors, the probe."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator

import pytest

from casstore.errors import (
    BackendError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    TransientBackendError,
    UnsupportedError,
)
from casstore.store import AzureBlobStore, open_store
from casstore.testing import azure
from casstore.testing.store_suite import StoreConformance

pytestmark = pytest.mark.azure


class TestAzureStore(StoreConformance):
    cross_process = True

    @pytest.fixture
    def store(self, azure_url: str) -> Iterator[AzureBlobStore]:
        store = open_store(azure_url, retry=False)
        assert isinstance(store, AzureBlobStore)
        with store:
            yield store




def test_connection_string_from_storage_options(azurite: str, monkeypatch) -> None:
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    url = f"az://{azure.CONTAINER}/{uuid.uuid4().hex}"
    open_store(url, connection_string=azurite).put("k", b"v")
    assert open_store(f"abfs://{url[5:]}", connection_string=azurite).get("k") == b"v"




def test_wrong_key_is_access_denied(azurite: str, azure_url: str) -> None:
    wrong = azurite.replace(azure.KEY, "d3Jvbmcta2V5" * 8)
    store = open_store(azure_url, retry=False, connection_string=wrong)
    for call in (lambda: store.get("k"), lambda: list(store.list("")), lambda: store.put("k", b"")):
        with pytest.raises(PermissionDeniedError, match="access denied"):
            call()




def test_missing_adlfs_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "adlfs", None)
    with pytest.raises(UnsupportedError, match=r"pip install casstore\[azure\]"):
        open_store("az://container/prefix")


def test_account_named_in_the_url(azurite: str, monkeypatch) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite)
    store = AzureBlobStore(f"abfs://{azure.CONTAINER}@{azure.ACCOUNT}.dfs.core.windows.net/p")
    assert (store.fs.account_name, store.root) == (azure.ACCOUNT, f"{azure.CONTAINER}/p")
    store.put("k", b"v")
    assert open_store(f"az://{azure.CONTAINER}/p").get("k") == b"v"




@pytest.mark.parametrize(
    ("make", "expected", "match"),
    [
        (lambda e: e.ServiceRequestError("connection refused"), TransientBackendError, "refused"),
        (lambda e: e.ServiceResponseError("connection reset"), TransientBackendError, "reset"),
        (lambda e: _status(e.HttpResponseError("busy"), 503), TransientBackendError, "503"),
        (lambda e: _status(e.HttpResponseError("slow down"), 429), TransientBackendError, "429"),
        (lambda e: _status(e.ClientAuthenticationError("x"), 403), PermissionDeniedError,
         "denied"),
        (lambda e: _status(e.ResourceModifiedError("stale"), 412), ConflictError, "precondition"),
        (lambda e: _status(e.ResourceNotFoundError("gone"), 404), NotFoundError, "not found"),
        (lambda e: _code(e.ResourceNotFoundError("c"), "ContainerNotFound"), NotFoundError,
         "container does not exist"),
        (lambda e: _status(e.HttpResponseError("bad"), 400), BackendError, "bad"),
    ],
)  # fmt: skip
def test_azure_errors_are_translated(make, expected: type, match: str) -> None:
    from azure.core import exceptions

    from casstore.store._translate import translate_error

    err = translate_error(make(exceptions), op="get", where="az://c/k")
    assert type(err) is expected and "az://c/k" in str(err)
    assert match in str(err)


def _status(exc: Exception, status: int) -> Exception:
    exc.status_code = status  # type: ignore[attr-defined]
    return exc


def _code(exc: Exception, code: str) -> Exception:
    exc.error_code = code  # type: ignore[attr-defined]
    return _status(exc, 404)
