"""An in-process store: a dict behind a lock. Atomic create and CAS within one process.

Useful in tests and for ``memory://name`` URLs, which name a process-wide store so that
several ``open_store("memory://x")`` calls (e.g. in-process CLI tests) see the same objects.
"""

from __future__ import annotations

import builtins
import itertools
import threading
import time
from collections.abc import Iterator

from casstore.errors import ConflictError, NotFoundError
from casstore.store._util import as_bytes, check_key, check_prefix, check_range, shows_reserved
from casstore.store.base import Capabilities, ObjectInfo, ObjectStore

_generation = itertools.count(1)
_named: dict[str, MemoryStore] = {}
_named_lock = threading.Lock()


class MemoryStore(ObjectStore):
    """A dict of key -> (bytes, mtime, generation). The CAS token is the generation."""

    capabilities = Capabilities(
        atomic_create=True, conditional_replace=True, concurrent_io=4, local=True
    )

    def __init__(self, name: str = "") -> None:
        self.url = f"memory://{name}"
        self._objects: dict[str, tuple[bytes, float, int]] = {}
        self._lock = threading.Lock()

    @classmethod
    def named(cls, name: str) -> MemoryStore:
        """The process-wide store called ``name`` (created on first use)."""
        with _named_lock:
            store = _named.get(name)
            if store is None:
                store = _named[name] = cls(name)
            return store

    @classmethod
    def forget(cls, name: str) -> None:
        """Drop the process-wide store called ``name`` (tests use this to start fresh)."""
        with _named_lock:
            _named.pop(name, None)

    def _entry(self, key: str) -> tuple[bytes, float, int]:
        try:
            return self._objects[check_key(key)]
        except KeyError:
            raise NotFoundError(f"object not found: {self.url}/{key}") from None

    # -- reads ---------------------------------------------------------------------------
    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        s, e = check_range(start, end)
        with self._lock:
            data = self._entry(key)[0]
        return data if s == 0 and e is None else data[s:e]

    def get_with_token(self, key: str) -> tuple[bytes, str]:
        with self._lock:
            data, _, gen = self._entry(key)
        return data, str(gen)

    def stat(self, key: str) -> ObjectInfo:
        with self._lock:
            data, mtime, _ = self._entry(key)
        return ObjectInfo(key, len(data), mtime)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        check_prefix(prefix)
        with self._lock:
            found = [
                ObjectInfo(k, len(d), m)
                for k, (d, m, _) in self._objects.items()
                if k.startswith(prefix) and shows_reserved(prefix, k)
            ]
        return iter(found)

    # -- writes --------------------------------------------------------------------------
    def _set(self, key: str, data: bytes) -> int:
        gen = next(_generation)
        self._objects[key] = (data, time.time(), gen)
        return gen

    def put(self, key: str, data: bytes | memoryview, *, sync: bool = True) -> None:
        check_key(key)
        data = as_bytes(data)
        with self._lock:
            self._set(key, data)

    def put_if_absent(self, key: str, data: bytes | memoryview, *, sync: bool = True) -> bool:
        check_key(key)
        data = as_bytes(data)
        with self._lock:
            if key in self._objects:
                return False
            self._set(key, data)
            return True

    def replace_if_match(self, key: str, data: bytes, token: str | None) -> str:
        check_key(key)
        data = as_bytes(data)
        with self._lock:
            current = self._objects.get(key)
            current_token = None if current is None else str(current[2])
            if current_token != token:
                raise ConflictError(
                    f"compare-and-swap failed on {self.url}/{key}: expected token {token!r}, "
                    f"found {current_token!r}"
                )
            return str(self._set(key, data))

    def delete(self, key: str) -> None:
        check_key(key)
        with self._lock:
            self._objects.pop(key, None)

    def keys(self) -> builtins.list[str]:
        """Every key (a test convenience)."""
        with self._lock:
            return sorted(self._objects)
