"""Wrapper stores: retry with confirmation, counting, fault injection, read-only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from casstore.errors import NotFoundError, PermissionDeniedError, TransientBackendError
from casstore.store import (
    MemoryStore,
    ObjectInfo,
    ReadOnlyStore,
    RetryingStore,
    WrappingStore,
    probe_conditional_writes,
)
from casstore.testing._workers import cas_increment
from casstore.testing.store_suite import StoreConformance
from casstore.testing.stores import CountingStore, FaultInjectingStore


def _retrying(inner: MemoryStore, **faults: float) -> RetryingStore:
    flaky = FaultInjectingStore(inner, seed=7, **faults)
    return RetryingStore(flaky, attempts=12, base_delay=0, sleep=lambda _: None, seed=1)


class TestRetryingOverFaults(StoreConformance):
    """The whole suite still holds through injected failures, delays and lost responses."""

    @pytest.fixture
    def store(self) -> Iterator[RetryingStore]:
        yield _retrying(MemoryStore(), fail_rate=0.15, lost_response_rate=0.1, delay_rate=0.05)


def test_retry_recovers_from_injected_faults() -> None:
    store = _retrying(MemoryStore(), fail_rate=0.4)
    for i in range(50):
        store.put(f"k/{i}", b"%d" % i)
    assert store.get_many([f"k/{i}" for i in range(50)]) == {f"k/{i}": b"%d" % i for i in range(50)}
    assert store.retries > 10
    assert store.inner.injected["fail"] == store.retries


def test_lost_response_put_if_absent_is_confirmed_by_content() -> None:
    inner = MemoryStore()
    store = _retrying(inner, lost_response_rate=0.5)
    inner.put("taken", b"someone else")
    created = [store.put_if_absent(f"new/{i}", b"mine %d" % i) for i in range(40)]
    assert all(created)  # a lost response then "exists" is still our own creation
    assert store.inner.injected["lost"] > 5
    assert [store.put_if_absent("taken", b"mine") for _ in range(10)] == [False] * 10
    assert inner.get("taken") == b"someone else"


def test_without_confirmation_a_lost_response_looks_like_exists() -> None:
    flaky = FaultInjectingStore(MemoryStore(), lost_response_rate=1.0, ops={"put_if_absent"})
    with pytest.raises(TransientBackendError):
        flaky.put_if_absent("k", b"v")
    assert flaky.inner.get("k") == b"v"  # it landed
    assert flaky.inner.put_if_absent("k", b"v") is False  # a naive retry says "existed"


def test_lost_response_cas_counts_exactly_once() -> None:
    store = _retrying(MemoryStore(), lost_response_rate=0.3, fail_rate=0.1)
    for _ in range(60):
        cas_increment(store, "counter")
    assert store.inner.inner.get("counter") == b"60"
    assert store.inner.injected["lost"] > 5


def test_retry_gives_up_and_passes_other_errors_through() -> None:
    store = RetryingStore(
        FaultInjectingStore(MemoryStore(), fail_rate=1.0),
        attempts=3,
        base_delay=0,
        sleep=lambda _: None,
    )
    with pytest.raises(TransientBackendError):
        store.put("k", b"v")
    assert store.retries == 2
    plain = RetryingStore(MemoryStore(), sleep=lambda _: None)
    with pytest.raises(NotFoundError):
        plain.get("missing")
    assert plain.retries == 0


class _ListFailsOnce(WrappingStore):
    def __init__(self, inner: MemoryStore) -> None:
        super().__init__(inner)
        self.failed = False

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        for n, info in enumerate(self.inner.list(prefix)):
            if n == 2 and not self.failed:
                self.failed = True
                raise TransientBackendError("connection reset mid-listing")
            yield info


def test_retrying_list_restarts_without_duplicates() -> None:
    inner = MemoryStore()
    for i in range(6):
        inner.put(f"l/{i}", b"x")
    store = RetryingStore(_ListFailsOnce(inner), sleep=lambda _: None)
    keys = [i.key for i in store.list("l/")]
    assert sorted(keys) == [f"l/{i}" for i in range(6)]
    assert store.retries == 1


def test_counting_store_counts_requests_and_bytes() -> None:
    store = CountingStore(MemoryStore())
    store.put("a", b"x" * 1000)
    store.put_if_absent("b", b"y" * 10)
    assert store.get("a", 100, 150) == b"x" * 50
    store.get_many(["a", "b"])
    store.exists_many(["a", "b", "c"])
    counts = store.counts()
    assert counts["get"].requests == 1 and counts["get"].bytes_read == 50
    assert counts["get_many"].requests == 2 and counts["get_many"].bytes_read == 1010
    assert counts["exists_many"].requests == 3
    assert store.bytes_written == 1010
    assert store.bytes_read == 1060
    assert store.requests == 1 + 1 + 1 + 2 + 3
    store.reset()
    assert store.requests == 0 and store.counts() == {}


def test_fault_injection_is_reproducible() -> None:
    def run(seed: int) -> list[bool]:
        store = FaultInjectingStore(MemoryStore(), seed=seed, fail_rate=0.5)
        outcome = []
        for i in range(40):
            try:
                store.put(f"k{i}", b"v")
                outcome.append(True)
            except TransientBackendError:
                outcome.append(False)
        return outcome

    assert run(3) == run(3)
    assert run(3) != run(4)
    assert 5 < run(3).count(False) < 35


def test_fault_injection_can_pause_and_target_ops() -> None:
    store = FaultInjectingStore(MemoryStore(), fail_rate=1.0, ops={"get"})
    store.put("k", b"v")  # not targeted
    with pytest.raises(TransientBackendError):
        store.get("k")
    store.active = False
    assert store.get("k") == b"v"


def test_read_only_store_refuses_writes() -> None:
    inner = MemoryStore()
    inner.put("k", b"v")
    store = ReadOnlyStore(inner)
    assert store.get("k") == b"v" and store.exists("k")
    assert [i.key for i in store.list("")] == ["k"]
    for call in (
        lambda: store.put("k", b"x"),
        lambda: store.put_many({"k": b"x"}),
        lambda: store.put_if_absent("n", b"x"),
        lambda: store.replace_if_match("k", b"x", None),
        lambda: store.delete("k"),
        lambda: store.delete_many(["k"]),
    ):
        with pytest.raises(PermissionDeniedError, match="read-only"):
            call()
    assert inner.get("k") == b"v" and not inner.exists("n")
    store.flush()


class _IgnoresPreconditions(WrappingStore):
    def put_if_absent(self, key: str, data: bytes | memoryview, *, sync: bool = True) -> bool:
        self.inner.put(key, data)
        return True


def test_probe_detects_a_store_that_ignores_preconditions() -> None:
    assert probe_conditional_writes(MemoryStore()) is True
    store = MemoryStore()
    assert probe_conditional_writes(_IgnoresPreconditions(store)) is False
    assert store.keys() == []  # the scratch key is cleaned up


def test_retry_stops_when_its_time_budget_is_spent() -> None:
    """Issue 15 item 1: a dead endpoint fails within the budget, not after every try."""
    now = [0.0]

    def slow_failure(key: str, *_: object) -> bytes:
        now[0] += 4.0  # each try takes 4 s (a connect timeout)
        raise TransientBackendError(f"cannot connect for {key}")

    inner = MemoryStore()
    inner.get = slow_failure  # type: ignore[method-assign]
    store = RetryingStore(inner, attempts=10, budget=10.0, sleep=lambda _: None,
                          clock=lambda: now[0])
    with pytest.raises(TransientBackendError, match=r"gave up after 3 tries in 12\.0s"):
        store.get("k")
    assert store.retries == 2
