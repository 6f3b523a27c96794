"""Wrapper stores: cross-cutting behaviour around any ObjectStore, never inside a backend.

* :class:`RetryingStore` retries transient failures with exponential backoff and jitter, and
  confirms uncertain conditional writes by reading back.
* :class:`ReadOnlyStore` refuses every write with :class:`~casstore.errors.PermissionDeniedError`
  (a read-only view is a permission, like ``EROFS``; it is not worth retrying).

Test doubles built on :class:`WrappingStore` (counting, fault injection) live in
:mod:`casstore.testing.stores`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from casstore.errors import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    TransientBackendError,
)
from casstore.store.base import Capabilities, ObjectInfo, ObjectStore

T = TypeVar("T")


class WrappingStore(ObjectStore):
    """Delegates every call to ``inner``; subclasses override what they change.
    Attributes the interface does not define (``root``, ``fs``, ...) are forwarded too."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner

    @property  # type: ignore[override]
    def url(self) -> str:
        return self.inner.url

    @property  # type: ignore[override]
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    def __getattr__(self, name: str) -> Any:
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        return self.inner.get(key, start, end)

    def get_into(self, key: str, buffer: bytearray | memoryview) -> int:
        return self.inner.get_into(key, buffer)

    def get_with_token(self, key: str) -> tuple[bytes, str]:
        return self.inner.get_with_token(key)

    def stat(self, key: str) -> ObjectInfo:
        return self.inner.stat(key)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def exists_many(self, keys: Iterable[str]) -> set[str]:
        return self.inner.exists_many(keys)

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        return self.inner.get_many(keys)

    def put(self, key: str, data: bytes | memoryview, *, sync: bool = True) -> None:
        self.inner.put(key, data, sync=sync)

    def put_many(self, items: Mapping[str, bytes | memoryview], *, sync: bool = True) -> None:
        self.inner.put_many(items, sync=sync)

    def put_if_absent(self, key: str, data: bytes | memoryview, *, sync: bool = True) -> bool:
        return self.inner.put_if_absent(key, data, sync=sync)

    def replace_if_match(self, key: str, data: bytes, token: str | None) -> str:
        return self.inner.replace_if_match(key, data, token)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def delete_many(self, keys: Iterable[str]) -> None:
        self.inner.delete_many(keys)

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"


class RetryingStore(WrappingStore):
    """Retry :class:`TransientBackendError` up to ``attempts`` times in all, sleeping
    ``min(max_delay, base_delay * 2**n)`` scaled by a random factor in [0.5, 1).

    Conditional writes after an uncertain failure (the first try may have landed and only
    its response been lost) are confirmed by content: ``put_if_absent`` answering "exists",
    or ``replace_if_match`` answering ConflictError, counts as our own success when the stored
    bytes equal ours. This cannot tell our write from another writer's identical bytes; for
    content-addressed objects the two are the same, and for refs it means the state we wanted.
    """

    def __init__(
        self,
        inner: ObjectStore,
        *,
        attempts: int = 5,
        base_delay: float = 0.05,
        max_delay: float = 2.0,
        budget: float = 10.0,
        seed: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(inner)
        self.attempts = max(1, attempts)
        self.base_delay, self.max_delay = base_delay, max_delay
        self.budget = budget  # no new try starts once an operation has taken this long
        self._rng = random.Random(seed)
        self._sleep = sleep
        self._clock = clock
        self.retries = 0  # how many retries were made (tests read it)

    def _backoff(self, attempt: int, started: float, error: TransientBackendError) -> None:
        """Sleep before try ``attempt + 2``, or raise ``error`` (saying how long we tried)
        when the tries or the time budget are used up: a dead endpoint fails within about
        ``budget`` plus one request's timeout, not the product of every layer's retries."""
        spent = self._clock() - started
        if attempt >= self.attempts - 1 or spent >= self.budget:
            if attempt == 0:
                raise error
            raise TransientBackendError(
                f"{error} (gave up after {attempt + 1} tries in {spent:.1f}s)"
            ) from error
        self.retries += 1
        delay = min(self.max_delay, self.base_delay * 2**attempt)
        self._sleep(delay * (0.5 + self._rng.random() / 2))

    def _retry(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        started = self._clock()
        for attempt in range(self.attempts):
            try:
                return fn(*args, **kwargs)
            except TransientBackendError as e:
                self._backoff(attempt, started, e)
        raise AssertionError("unreachable")

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        return self._retry(self.inner.get, key, start, end)

    def get_into(self, key: str, buffer: bytearray | memoryview) -> int:
        return self._retry(self.inner.get_into, key, buffer)

    def get_with_token(self, key: str) -> tuple[bytes, str]:
        return self._retry(self.inner.get_with_token, key)

    def stat(self, key: str) -> ObjectInfo:
        return self._retry(self.inner.stat, key)

    def exists(self, key: str) -> bool:
        return self._retry(self.inner.exists, key)

    def exists_many(self, keys: Iterable[str]) -> set[str]:
        return self._retry(self.inner.exists_many, list(keys))

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        return self._retry(self.inner.get_many, list(keys))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Restart a failed listing, skipping keys already yielded."""
        seen: set[str] = set()
        started = self._clock()
        for attempt in range(self.attempts):
            try:
                for info in self.inner.list(prefix):
                    if info.key not in seen:
                        seen.add(info.key)
                        yield info
                return
            except TransientBackendError as e:
                self._backoff(attempt, started, e)

    def put(self, key: str, data: bytes | memoryview, *, sync: bool = True) -> None:
        self._retry(self.inner.put, key, data, sync=sync)

    def put_many(self, items: Mapping[str, bytes | memoryview], *, sync: bool = True) -> None:
        self._retry(self.inner.put_many, dict(items), sync=sync)

    def put_if_absent(self, key: str, data: bytes | memoryview, *, sync: bool = True) -> bool:
        uncertain = False
        started = self._clock()
        for attempt in range(self.attempts):
            try:
                created = self.inner.put_if_absent(key, data, sync=sync)
            except TransientBackendError as e:
                uncertain = True
                self._backoff(attempt, started, e)
                continue
            if created or not uncertain:
                return created
            try:  # "exists" after a lost response: was it our first try?
                return self._retry(self.inner.get, key) == bytes(data)
            except NotFoundError:
                return False
        raise AssertionError("unreachable")

    def replace_if_match(self, key: str, data: bytes, token: str | None) -> str:
        uncertain = False
        started = self._clock()
        for attempt in range(self.attempts):
            try:
                return self.inner.replace_if_match(key, data, token)
            except TransientBackendError as e:
                uncertain = True
                self._backoff(attempt, started, e)
            except ConflictError:
                if uncertain:
                    try:
                        current, new_token = self._retry(self.inner.get_with_token, key)
                    except NotFoundError:
                        current, new_token = None, ""
                    if current == bytes(data):
                        return new_token
                raise
        raise AssertionError("unreachable")

    def delete(self, key: str) -> None:
        self._retry(self.inner.delete, key)

    def delete_many(self, keys: Iterable[str]) -> None:
        self._retry(self.inner.delete_many, list(keys))

    def flush(self) -> None:
        self._retry(self.inner.flush)


class ReadOnlyStore(WrappingStore):
    """Reads pass through; every write raises PermissionDeniedError."""

    def _refuse(self, op: str) -> PermissionDeniedError:
        return PermissionDeniedError(f"{op} refused: {self.url} is opened read-only")

    def put(self, key: str, data: bytes | memoryview, *, sync: bool = True) -> None:
        raise self._refuse("put")

    def put_many(self, items: Mapping[str, bytes | memoryview], *, sync: bool = True) -> None:
        raise self._refuse("put_many")

    def put_if_absent(self, key: str, data: bytes | memoryview, *, sync: bool = True) -> bool:
        raise self._refuse("put_if_absent")

    def replace_if_match(self, key: str, data: bytes, token: str | None) -> str:
        raise self._refuse("replace_if_match")

    def delete(self, key: str) -> None:
        raise self._refuse("delete")

    def delete_many(self, keys: Iterable[str]) -> None:
        raise self._refuse("delete_many")

    def flush(self) -> None:
        pass  # nothing was written through this view
