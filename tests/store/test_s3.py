"""FsspecStore on S3 (moto's server over real HTTP): the suite, error translation, probing."""

from __future__ import annotations

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
from casstore.store import FsspecStore, open_store
from casstore.store._translate import translate_error
from casstore.testing.s3 import BUCKET
from casstore.testing.store_suite import StoreConformance

pytestmark = pytest.mark.s3


class TestS3Store(StoreConformance):
    cross_process = True

    @pytest.fixture
    def store(self, s3_url: str) -> Iterator[FsspecStore]:
        store = open_store(s3_url, retry=False)
        assert isinstance(store, FsspecStore)
        with store:
            yield store


def test_s3_capabilities_and_probe(s3_url: str) -> None:
    store = open_store(s3_url)
    assert store.capabilities.atomic_create and store.capabilities.conditional_replace
    assert store.probe_conditional_writes() is True
    assert store.capabilities.conditional_replace  # still trusted after the probe


def test_endpoint_from_storage_options(moto_s3: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CASSTORE_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    url = f"s3://{BUCKET}/{uuid.uuid4().hex}"
    open_store(url, endpoint_url=moto_s3).put("k", b"v")
    assert open_store(url, client_kwargs={"endpoint_url": moto_s3}).get("k") == b"v"
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_s3)
    assert open_store(url).get("k") == b"v"


def test_missing_bucket(moto_s3: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASSTORE_S3_ENDPOINT_URL", moto_s3)
    store = open_store(f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/prefix")
    for call in (
        lambda: store.get("k"),
        lambda: store.stat("k"),
        lambda: store.exists("k"),
        lambda: list(store.list("")),
        lambda: store.put("k", b"v"),
        lambda: store.put_if_absent("k", b"v"),
    ):
        with pytest.raises(NotFoundError, match="bucket does not exist"):
            call()


def test_wrong_credentials_are_access_denied(s3_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.core.authorization import enable_iam_authentication

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG0")
    store = open_store(s3_url, retry=False, skip_instance_cache=True)
    with enable_iam_authentication():
        for call in (
            lambda: store.get("k"),
            lambda: list(store.list("")),
            lambda: store.put("k", b""),
        ):
            with pytest.raises(PermissionDeniedError, match="access denied"):
                call()


def test_no_credentials(s3_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    store = open_store(s3_url, retry=False, skip_instance_cache=True)
    with pytest.raises(PermissionDeniedError, match="no credentials"):
        store.get("k")


def test_unreachable_endpoint_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    from casstore.testing.s3 import free_port

    url = f"s3://{BUCKET}/x"
    store = open_store(
        url,
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        skip_instance_cache=True,
        config_kwargs={"retries": {"max_attempts": 1}, "connect_timeout": 1},
    )
    store.fs.retries = 1  # s3fs's own retry loop
    with pytest.raises(TransientBackendError):
        store.get("k")


class _ClientError(Exception):
    def __init__(self, code: str, status: int) -> None:
        super().__init__(code)
        self.response = {
            "Error": {"Code": code, "Message": f"{code} message"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("NoSuchKey", 404, NotFoundError),
        ("NoSuchBucket", 404, NotFoundError),
        ("AccessDenied", 403, PermissionDeniedError),
        ("InvalidAccessKeyId", 403, PermissionDeniedError),
        ("PreconditionFailed", 412, ConflictError),
        ("ConditionalRequestConflict", 409, TransientBackendError),
        ("SlowDown", 503, TransientBackendError),
        ("InternalError", 500, TransientBackendError),
        ("InvalidArgument", 400, BackendError),
    ],
)
def test_client_errors_are_translated(code: str, status: int, expected: type) -> None:
    # s3fs raises builtin errors with the botocore ClientError as the cause
    try:
        try:
            raise _ClientError(code, status)
        except _ClientError as e:
            raise OSError(5, "translated by s3fs") from e
    except OSError as outer:
        err = translate_error(outer, op="get", where="s3://b/k")
    assert type(err) is expected
    assert "s3://b/k" in str(err)


def test_missing_s3fs_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "s3fs", None)
    with pytest.raises(UnsupportedError, match=r"pip install casstore\[s3\]"):
        open_store("s3://bucket/prefix")


class _FlakyClient:
    """Wraps the real aiobotocore client: conditional PUTs first fail as scripted."""

    def __init__(self, real: object, script: list[str]) -> None:
        self.real, self.script = real, script

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)

    async def put_object(self, **kwargs: object) -> object:
        from botocore.exceptions import ClientError

        step = self.script.pop(0) if self.script else "pass"
        if step == "conflict":
            error = {"Code": "ConditionalRequestConflict", "Message": "try again"}
            raise ClientError(
                {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 409}}, "PutObject"
            )
        out = await self.real.put_object(**kwargs)  # type: ignore[attr-defined]
        if step == "landed-then-412":  # botocore retried after a lost response: the retry got 412
            meta = {"HTTPStatusCode": 412, "RetryAttempts": 1}
            error = {"Code": "PreconditionFailed", "Message": "At least one of the pre-conditions"}
            raise ClientError({"Error": error, "ResponseMetadata": meta}, "PutObject")
        return out


@pytest.fixture
def flaky_s3(s3_url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[FsspecStore, list[str]]:
    store = open_store(s3_url, retry=False, skip_instance_cache=True)
    script: list[str] = []
    real_get_s3 = store.fs.get_s3

    async def get_s3(bucket: str | None = None) -> _FlakyClient:
        return _FlakyClient(await real_get_s3(bucket), script)

    monkeypatch.setattr(store.fs, "get_s3", get_s3)
    return store, script


def test_s3_retried_conditional_put_is_confirmed_by_content(flaky_s3) -> None:
    store, script = flaky_s3
    script.append("landed-then-412")
    assert store.put_if_absent("k", b"mine") is True
    script.append("landed-then-412")
    _, token = store.get_with_token("k")
    new = store.replace_if_match("k", b"next", token)
    assert store.get_with_token("k") == (b"next", new)
    store.put("other", b"theirs")
    assert store.put_if_absent("other", b"mine") is False  # a plain 412: really existed


def test_s3_409_conflicts_are_retried(flaky_s3) -> None:
    store, script = flaky_s3
    script.extend(["conflict", "conflict"])
    assert store.put_if_absent("k", b"v") is True
    script.extend(["conflict"] * 10)
    with pytest.raises(TransientBackendError, match="409"):
        store.replace_if_match("k", b"w", None)


def test_s3_lost_responses_with_retrying_store(s3_url: str) -> None:
    from casstore.store import RetryingStore
    from casstore.testing.stores import FaultInjectingStore

    flaky = FaultInjectingStore(open_store(s3_url, retry=False), seed=3, lost_response_rate=0.5)
    store = RetryingStore(flaky, base_delay=0, sleep=lambda _: None)
    assert all(store.put_if_absent(f"c/{i}", b"chunk %d" % i) for i in range(10))
    token = None
    for i in range(10):
        token = store.replace_if_match("ref", b"v%d" % i, token)
    assert store.get_with_token("ref") == (b"v9", token)
    assert flaky.injected["lost"] > 3


def test_get_many_fills_one_buffer_and_refuses_a_cut_body(moto_s3: str, s3_url: str,
                                                          monkeypatch: pytest.MonkeyPatch):
    """``get_many`` reads each body into one buffer of its announced length as it arrives
    (bytes-like, equal to what was put); a body cut short (headers promise more than the
    connection delivers) is an error, never a short object."""
    from casstore.testing.faultproxy import FaultProxy

    data = {f"big/{i}": bytes([i]) * (3 << 20) + uuid.uuid4().bytes for i in range(3)}
    key = s3_url.removeprefix("s3://").split("/", 1)[1]
    with open_store(s3_url, retry=False) as store:
        store.put_many(data)
        got = store.get_many(list(data))
        assert got == data and all(isinstance(v, bytearray) for v in got.values())
    with FaultProxy(moto_s3, rate=1.0, faults=("truncate",)) as px:
        monkeypatch.setenv("CASSTORE_S3_ENDPOINT_URL", px.url)
        with open_store(f"s3://{BUCKET}/{key}", retry=False) as cut, \
                pytest.raises(BackendError):
            cut.get_many(["big/0", "big/1"])
        assert px.counts["truncate"] >= 1


def test_moto_in_a_process_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmark's server (moto_s3_process): a casstore store works against it over
    HTTP, with conditional writes decided; the server is gone with the context."""
    import os
    import socket

    from casstore.testing.s3 import moto_s3_process

    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    with moto_s3_process() as endpoint:
        store = open_store(f"s3://{BUCKET}/{uuid.uuid4().hex}", endpoint_url=endpoint)
        assert store.put_if_absent("k", b"1") and not store.put_if_absent("k", b"2")
        assert store.get("k") == b"1"
    assert "AWS_ACCESS_KEY_ID" not in os.environ  # restored
    host, port = endpoint.removeprefix("http://").split(":")
    with pytest.raises(ConnectionRefusedError), socket.create_connection((host, int(port)), 2):
        pass


def test_uploads_hold_each_body_once() -> None:
    """botocore hands a bytes body to aiohttp as a ``BytesIO``, which aiohttp sizes with
    ``getbuffer()``: that un-shares (copies) it, so every object in flight was held twice
    (a push's 13 MiB batch: 13 MiB more). The store's uploads are sized without a copy:
    what uploading 4 x 4 MiB at once allocates beyond the bodies stays under one body (was 18 MB),
    on every path (put, put_many, put_if_absent, replace_if_match), and the bytes land.
    The server runs in a process of its own: what it allocates is not counted here."""
    import tracemalloc

    from casstore.testing.s3 import moto_s3_process

    body = 4 << 20
    data = {f"up/{i}": bytes([i]) * body + uuid.uuid4().bytes for i in range(4)}
    with moto_s3_process() as endpoint, open_store(
            f"s3://{BUCKET}/{uuid.uuid4().hex}", retry=False, endpoint_url=endpoint) as store:
        store.put("warm", b"x")  # the client and its connection pool, before measuring

        def extra(call) -> int:
            tracemalloc.start()
            try:
                call()
                return tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()

        assert extra(lambda: store.put_many(data)) < body
        assert extra(lambda: store.put("one", data["up/0"])) < body
        assert extra(lambda: store.put_if_absent("cond", data["up/1"])) < body
        _, token = store.get_with_token("cond")
        assert extra(lambda: store.replace_if_match("cond", data["up/2"], token)) < body
        assert store.get_many(list(data)) == data
        assert store.get("one") == data["up/0"] and store.get("cond") == data["up/2"]
