"""GcsStore on fake-gcs-server over real HTTP: the conformance suite, errors, the probe
(which must catch gcp-storage-emulator, a server that ignores preconditions)."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator

import pytest

from casstore import Repository
from casstore.errors import (
    BackendError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    TransientBackendError,
    UnsupportedError,
)
from casstore.store import GcsStore, open_store
from casstore.testing import gcs
from casstore.testing.s3 import free_port
from casstore.testing.store_suite import StoreConformance
from tests import series

pytestmark = pytest.mark.gcs


class TestGcsStore(StoreConformance):
    cross_process = True

    @pytest.fixture
    def store(self, gcs_url: str) -> Iterator[GcsStore]:
        store = open_store(gcs_url, retry=False)
        assert isinstance(store, GcsStore)
        with store:
            yield store




def test_endpoint_from_storage_options(fake_gcs: str, monkeypatch) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    url = f"gs://{gcs.BUCKET}/{uuid.uuid4().hex}"
    open_store(url, endpoint_url=fake_gcs).put("k", b"v")
    assert open_store(f"gcs://{url[5:]}", endpoint_url=fake_gcs).get("k") == b"v"




def test_unreachable_endpoint_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(
        f"gs://{gcs.BUCKET}/x", retry=False, endpoint_url=f"http://127.0.0.1:{free_port()}"
    )
    with pytest.raises(TransientBackendError):
        store.get("k")




def test_init_probe_catches_a_server_that_ignores_preconditions(tmp_path, monkeypatch) -> None:
    """gcp-storage-emulator accepts ifGenerationMatch and ignores it: init records that, and
    ref moves are refused (nothing stored) unless the store is declared single-writer."""
    pytest.importorskip("gcp_storage_emulator", reason="needs gcp-storage-emulator (test extra)")
    from casstore.errors import UnsupportedError as Unsupported

    for name, value in gcs.ENV.items():
        monkeypatch.setenv(name, value)
    with gcs.gcp_storage_emulator() as endpoint:
        url = f"gs://{gcs.BUCKET}/{uuid.uuid4().hex}"
        store = open_store(url, endpoint_url=endpoint)
        assert store.capabilities.conditional_replace  # what the backend claims
        assert store.put_if_absent("k", b"1") and store.put_if_absent("k", b"2")  # ignored
        repo = Repository(store)
        assert repo.init().conditional_writes is False
        f = series.save(tmp_path / "w.safetensors", series.tensors(n=2))
        with pytest.raises(Unsupported, match="single-writer"):
            repo.commit("m", [f])
        assert list(store.list("models/")) == []


def test_missing_gcsfs_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gcsfs", None)
    with pytest.raises(UnsupportedError, match=r"pip install casstore\[gcs\]"):
        open_store("gs://bucket/prefix")




@pytest.mark.parametrize(
    ("status", "expected"),
    [(404, NotFoundError), (403, PermissionDeniedError), (401, PermissionDeniedError),
     (412, ConflictError), (429, TransientBackendError), (503, TransientBackendError),
     (400, BackendError)],
)  # fmt: skip
def test_gcs_http_errors_are_translated(status: int, expected: type) -> None:
    from casstore.store._translate import translate_error
    from casstore.store.gcs import GcsHttpError

    err = translate_error(GcsHttpError(status, "message"), op="get", where="gs://b/k")
    assert type(err) is expected and "gs://b/k" in str(err)


@pytest.mark.parametrize("write", ["put", "put_if_absent", "replace_if_match"])
def test_an_upload_on_a_connection_the_server_closed(fake_gcs: str, write: str) -> None:
    """The server aborts the connection once an upload's headers are in, before its body (a
    pooled keep-alive connection it had closed): nothing reaches the server. aiohttp sends
    idempotent methods again by itself, never POST (every GCS upload). A plain upload is
    sent again and lands. A conditional one is sent again when its body could not be
    written; when the client instead first reads the reset (a race between its writer and
    reader), it cannot tell whether the server acted, and raises TransientBackendError with
    the store unchanged; RetryingStore, which every opened store has, then lands it."""
    from casstore.testing.faultproxy import FaultProxy

    data = bytes(range(256)) * (64 << 10)  # 16 MiB: more than the sockets buffer
    with FaultProxy(fake_gcs, rate=1.0, faults=("stale",), max_faults=1) as px:
        url = f"gs://{gcs.BUCKET}/{uuid.uuid4().hex}"
        raw = open_store(url, retry=False, endpoint_url=px.url)
        px.enabled = False
        raw.put("setup", b"x")
        old = raw.get_with_token("setup")[1]
        key = "setup" if write == "replace_if_match" else "k"
        for store in (raw, open_store(url, endpoint_url=px.url)):
            px.enabled, px.max_faults = True, sum(px.counts.values()) + 1
            try:
                if write == "put":
                    store.put("k", data)
                elif write == "put_if_absent":
                    assert store.put_if_absent("k", data)
                else:
                    store.replace_if_match("setup", data, old)
            except TransientBackendError:
                assert write != "put" and store is raw  # only the uncertain case
                assert (raw.get(key) == b"x") if key == "setup" else not raw.exists(key)
                continue
            assert raw.get(key) == data
            break
        assert sum(px.counts.values()) >= 1  # the fault was met
        assert raw.get(key) == data
        if write == "put_if_absent":
            assert not raw.put_if_absent("k", b"other")  # landed once, precondition holds
