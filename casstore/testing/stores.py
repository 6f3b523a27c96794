"""Wrapper stores for tests and benchmarks (not used by casstore itself).

* :class:`CountingStore` counts requests and bytes per operation: tests use it to hold the
  library to its request bounds, benchmarks to report bytes moved.
* :class:`FaultInjectingStore` fails, delays or "loses the response of" a seeded fraction of
  calls with :class:`~casstore.errors.TransientBackendError`.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from casstore.errors import TransientBackendError
from casstore.store.base import ObjectInfo, ObjectStore
from casstore.store.wrappers import WrappingStore

T = TypeVar("T")


@dataclass(frozen=True)
class OpCount:
    """Requests and bytes for one operation name."""

    requests: int = 0
    bytes_read: int = 0
    bytes_written: int = 0


class CountingStore(WrappingStore):
    """Counts requests and bytes per operation. Batch calls count one request per key.
    Conditional writes count their bytes as written even when refused (they are sent).
    ``reads`` counts the reads of each key (every kind of get)."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self._lock = threading.Lock()
        self._counts: dict[str, OpCount] = {}
        self.reads: Counter[str] = Counter()

    def _add(self, op: str, requests: int = 1, read: int = 0, written: int = 0,
             keys: Iterable[str] = ()) -> None:
        with self._lock:
            self.reads.update(keys)
            c = self._counts.get(op, OpCount())
            self._counts[op] = replace(
                c,
                requests=c.requests + requests,
                bytes_read=c.bytes_read + read,
                bytes_written=c.bytes_written + written,
            )

    def counts(self) -> dict[str, OpCount]:
        """A snapshot: operation name -> OpCount."""
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self.reads.clear()

    @property
    def requests(self) -> int:
        return sum(c.requests for c in self.counts().values())

    @property
    def bytes_read(self) -> int:
        return sum(c.bytes_read for c in self.counts().values())

    @property
    def bytes_written(self) -> int:
        return sum(c.bytes_written for c in self.counts().values())

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        self._add("get", keys=[key])
        data = self.inner.get(key, start, end)
        self._add("get", 0, read=len(data))
        return data

    def get_into(self, key: str, buffer: bytearray | memoryview) -> int:
        self._add("get", keys=[key])
        n = self.inner.get_into(key, buffer)
        self._add("get", 0, read=min(n, len(buffer)))
        return n

    def get_with_token(self, key: str) -> tuple[bytes, str]:
        self._add("get_with_token", keys=[key])
        data, token = self.inner.get_with_token(key)
        self._add("get_with_token", 0, read=len(data))
        return data, token

    def stat(self, key: str) -> ObjectInfo:
        self._add("stat")
        return self.inner.stat(key)

    def exists(self, key: str) -> bool:
        self._add("exists")
        return self.inner.exists(key)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        self._add("list")
        return self.inner.list(prefix)

    def exists_many(self, keys: Iterable[str]) -> set[str]:
        keys = list(keys)
        self._add("exists_many", len(keys))
        return self.inner.exists_many(keys)

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        keys = list(keys)
        self._add("get_many", len(keys), keys=keys)
        out = self.inner.get_many(keys)
        self._add("get_many", 0, read=sum(len(v) for v in out.values()))
        return out

    def put(self, key: str, data: bytes | memoryview, *, sync: bool = True) -> None:
        self._add("put", written=len(data))
        self.inner.put(key, data, sync=sync)

    def put_many(self, items: Mapping[str, bytes | memoryview], *, sync: bool = True) -> None:
        items = dict(items)
        self._add("put_many", len(items), written=sum(len(v) for v in items.values()))
        self.inner.put_many(items, sync=sync)

    def put_if_absent(self, key: str, data: bytes | memoryview, *, sync: bool = True) -> bool:
        self._add("put_if_absent", written=len(data))
        return self.inner.put_if_absent(key, data, sync=sync)

    def replace_if_match(self, key: str, data: bytes, token: str | None) -> str:
        self._add("replace_if_match", written=len(data))
        return self.inner.replace_if_match(key, data, token)

    def delete(self, key: str) -> None:
        self._add("delete")
        self.inner.delete(key)

    def delete_many(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        self._add("delete_many", len(keys))
        self.inner.delete_many(keys)


_WRITES = frozenset(
    {"put", "put_many", "put_if_absent", "replace_if_match", "delete", "delete_many"}
)


class RemoteLookingStore(WrappingStore):
    """A store that says it is remote (``capabilities.local`` False), as a bucket does: the
    code paths that differ for remote stores (batches read ahead, independent requests in
    flight together, objects fetched whole) run over any store; over a
    :class:`FaultInjectingStore` that delays every call, as if one round trip away."""

    @property
    def capabilities(self):  # type: ignore[no-untyped-def]
        return replace(self.inner.capabilities, local=False)


class FaultInjectingStore(WrappingStore):
    """Injects TransientBackendError into a seeded fraction of calls.

    For each call to an operation in ``ops`` (default: all) one draw decides: with probability
    ``fail_rate`` fail before doing anything; else (writes only) with ``lost_response_rate``
    do the write and then fail, as if the response were lost; else with ``delay_rate`` sleep
    ``delay`` seconds first. ``injected`` counts what was done; set ``active = False`` to pause.
    """

    def __init__(
        self,
        inner: ObjectStore,
        *,
        seed: int = 0,
        fail_rate: float = 0.0,
        lost_response_rate: float = 0.0,
        delay_rate: float = 0.0,
        delay: float = 0.01,
        ops: Iterable[str] | None = None,
    ) -> None:
        super().__init__(inner)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.fail_rate, self.lost_response_rate = fail_rate, lost_response_rate
        self.delay_rate, self.delay = delay_rate, delay
        self.ops = None if ops is None else frozenset(ops)
        self.active = True
        self.injected: Counter[str] = Counter()

    def _call(self, op: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        action = None
        if self.active and (self.ops is None or op in self.ops):
            with self._lock:
                r = self._rng.random()
            lost = self.lost_response_rate if op in _WRITES else 0.0
            if r < self.fail_rate:
                action = "fail"
            elif r < self.fail_rate + lost:
                action = "lost"
            elif r < self.fail_rate + lost + self.delay_rate:
                action = "delay"
        if action is not None:
            with self._lock:
                self.injected[action] += 1
        if action == "fail":
            raise TransientBackendError(f"injected fault: {op} {self.url} failed")
        if action == "delay":
            time.sleep(self.delay)
        result = fn(*args, **kwargs)
        if action == "lost":
            raise TransientBackendError(f"injected fault: {op} {self.url} response lost")
        return result

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        return self._call("get", self.inner.get, key, start, end)

    def get_into(self, key: str, buffer: bytearray | memoryview) -> int:
        return self._call("get", self.inner.get_into, key, buffer)

    def get_with_token(self, key: str) -> tuple[bytes, str]:
        return self._call("get_with_token", self.inner.get_with_token, key)

    def stat(self, key: str) -> ObjectInfo:
        return self._call("stat", self.inner.stat, key)

    def exists(self, key: str) -> bool:
        return self._call("exists", self.inner.exists, key)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        return self._call("list", self.inner.list, prefix)

    def exists_many(self, keys: Iterable[str]) -> set[str]:
        return self._call("exists_many", self.inner.exists_many, list(keys))

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        return self._call("get_many", self.inner.get_many, list(keys))

    def put(self, key: str, data: bytes | memoryview, *, sync: bool = True) -> None:
        self._call("put", self.inner.put, key, data, sync=sync)

    def put_many(self, items: Mapping[str, bytes | memoryview], *, sync: bool = True) -> None:
        self._call("put_many", self.inner.put_many, dict(items), sync=sync)

    def put_if_absent(self, key: str, data: bytes | memoryview, *, sync: bool = True) -> bool:
        return self._call("put_if_absent", self.inner.put_if_absent, key, data, sync=sync)

    def replace_if_match(self, key: str, data: bytes, token: str | None) -> str:
        return self._call("replace_if_match", self.inner.replace_if_match, key, data, token)

    def delete(self, key: str) -> None:
        self._call("delete", self.inner.delete, key)

    def delete_many(self, keys: Iterable[str]) -> None:
        self._call("delete_many", self.inner.delete_many, list(keys))


__all__ = ["CountingStore", "FaultInjectingStore", "OpCount"]
