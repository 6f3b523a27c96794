"""What every remote backend must do beyond the conformance suite, on S3 (moto), Azure
(Azurite) and GCS (fake-gcs-server): promise and prove conditional writes, name a missing
bucket, and survive lost responses behind a RetryingStore."""

from __future__ import annotations

import uuid

import pytest

from casstore.errors import NotFoundError
from casstore.store import RetryingStore, open_store
from casstore.testing.stores import FaultInjectingStore


@pytest.fixture(
    params=[
        pytest.param("s3", marks=pytest.mark.s3),
        pytest.param("azure", marks=pytest.mark.azure),
        pytest.param("gcs", marks=pytest.mark.gcs),
    ]
)
def url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


def test_capabilities_and_probe(url: str) -> None:
    store = open_store(url)
    assert store.capabilities.atomic_create and store.capabilities.conditional_replace
    assert store.probe_conditional_writes() is True
    assert store.capabilities.conditional_replace  # still trusted after the probe


def test_missing_bucket_is_named(url: str) -> None:
    scheme = url.split("://", 1)[0]
    word = "container" if scheme == "az" else "bucket"
    store = open_store(f"{scheme}://no-such-{word}-{uuid.uuid4().hex[:8]}/prefix", retry=False)
    for call in (
        lambda: store.get("k"),
        lambda: store.stat("k"),
        lambda: store.exists("k"),
        lambda: list(store.list("")),
        lambda: store.put("k", b"v"),
        lambda: store.put_if_absent("k", b"v"),
        lambda: store.delete("k"),
    ):
        with pytest.raises(NotFoundError, match=f"{word} does not exist"):
            call()


def test_lost_responses_with_retrying_store(url: str) -> None:
    flaky = FaultInjectingStore(open_store(url, retry=False), seed=3, lost_response_rate=0.5)
    store = RetryingStore(flaky, base_delay=0, sleep=lambda _: None)
    assert all(store.put_if_absent(f"c/{i}", b"chunk %d" % i) for i in range(10))
    token = None
    for i in range(10):
        token = store.replace_if_match("ref", b"v%d" % i, token)
    assert store.get_with_token("ref") == (b"v9", token)
    assert flaky.injected["lost"] > 3


def test_listing_follows_pages(url: str) -> None:
    store = open_store(url, retry=False)
    if not hasattr(store, "list_page_size"):
        pytest.skip("the S3 store has no page-size knob (it follows ContinuationToken pages)")
    store.list_page_size = 2
    store.put_many({f"p/{i}": b"x" for i in range(5)})
    assert sorted(i.key for i in store.list("p/")) == [f"p/{i}" for i in range(5)]
