"""The ObjectStore interface every backend implements, and the guarantees it must give.

A store is a flat namespace of keys ('/'-separated, built only by :mod:`casstore.repo.keys`)
holding immutable-or-CAS byte objects. The interface is small and synchronous; concurrency
lives one layer up (thread pools, or a backend's own batch calls behind ``get_many`` /
``exists_many`` / ``put_many``).

Guarantees every backend must give (the conformance suite in
:mod:`casstore.testing.store_suite` checks them):

* ``put`` and ``put_if_absent`` are atomic: a reader sees either no object or the whole
  object, never a prefix. A crash mid-write leaves no visible partial object under the key
  (temporary files may remain under ``tmp/``; GC reclaims them).
* ``put_if_absent`` creates the object only if the key is absent. With
  ``capabilities.atomic_create`` this holds against concurrent writers in other processes and
  machines; without it, it is best effort (check, then write).
* ``replace_if_match(key, data, token)`` is compare-and-swap: it writes only if the object's
  current token equals ``token`` (``None``: the key must be absent) and returns the new token;
  otherwise it raises :class:`~casstore.errors.ConflictError`. Atomic across processes only with
  ``capabilities.conditional_replace``.
* ``get`` of a missing key raises :class:`~casstore.errors.NotFoundError`; every other backend
  failure is translated into :class:`~casstore.errors.BackendError` (or a subclass). An error is
  never reported as an empty listing or a missing object.
* ``delete`` of a missing key is not an error (deletes are idempotent).
* ``sync=False`` on a write lets a backend defer durability (e.g. fsync) until ``flush()``;
  the object is already visible and complete to readers. ``flush()`` makes every earlier write
  durable. Writes with ``sync=True`` (the default) are durable when the call returns.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

from casstore.errors import NotFoundError


class Parts:
    """Object data given as several buffers to store back to back, without joining them
    first (a chunk's header and its memory-mapped payload). ``bytes(parts)`` joins them;
    ``len(parts)`` is the total size. Every backend accepts it wherever data is taken."""

    __slots__ = ("buffers",)

    def __init__(self, *buffers: bytes | memoryview) -> None:
        self.buffers = tuple(memoryview(b).cast("B") for b in buffers)

    def __len__(self) -> int:
        return sum(len(b) for b in self.buffers)

    def __bytes__(self) -> bytes:
        return b"".join(self.buffers)


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing or ``stat`` tells about one object."""

    key: str
    size: int
    mtime: float  # seconds since the epoch (UTC)


@dataclass(frozen=True)
class Capabilities:
    """What a backend can promise beyond the basic interface."""

    atomic_create: bool  # put_if_absent is atomic across processes and machines
    conditional_replace: bool  # replace_if_match is atomic across processes and machines
    ranged_reads: bool = True  # get(start, end) reads only that range
    concurrent_io: int = 8  # a good number of parallel requests for this backend
    local: bool = False  # reads are local (disk, memory): no network round trip or transfer


class ObjectStore(abc.ABC):
    """A flat key -> bytes store. See the module docstring for the guarantees."""

    url: str
    capabilities: Capabilities

    # -- reads ---------------------------------------------------------------------------
    @abc.abstractmethod
    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        """The object's bytes, or the half-open range [start, end) of them."""

    @abc.abstractmethod
    def get_with_token(self, key: str) -> tuple[bytes, str]:
        """The object's bytes and its current CAS token (for ``replace_if_match``)."""

    @abc.abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Size and modification time; NotFoundError if absent."""

    @abc.abstractmethod
    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in no particular order."""

    def get_into(self, key: str, buffer: bytearray | memoryview) -> int:
        """Read the whole object into the start of ``buffer``; returns the object's size.
        If the object is larger than ``buffer``, returns its size and leaves the buffer's
        content unspecified (call :meth:`get` instead). Local backends read straight into
        the buffer, so a caller that reuses one buffer allocates nothing per object."""
        data = self.get(key)
        if len(data) <= len(buffer):
            memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except NotFoundError:
            return False
        return True

    def exists_many(self, keys: Iterable[str]) -> set[str]:
        """The subset of ``keys`` that exist. Backends may batch this."""
        keys = list(keys)
        if len(keys) <= 1:
            return {k for k in keys if self.exists(k)}
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.capabilities.concurrent_io) as pool:
            found = pool.map(self.exists, keys)
            return {k for k, ok in zip(keys, found) if ok}

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """Whole objects for many keys; NotFoundError if any is missing. May be batched.
        The values are bytes-like: a backend may give the ``bytearray`` it filled as an
        object arrived (S3), where a whole ``bytes`` would have cost a second copy."""
        keys = list(keys)
        if len(keys) <= 1:
            return {k: self.get(k) for k in keys}
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.capabilities.concurrent_io) as pool:
            return dict(zip(keys, pool.map(self.get, keys)))

    def get_found(self, keys: Iterable[str]) -> dict[str, bytes]:
        """:meth:`get_many` of the ``keys`` that exist, a missing one left out: one batch,
        and one request at a time only when one turned out missing."""
        keys = list(keys)
        try:
            return self.get_many(keys)
        except NotFoundError:
            out = {}
            for k in keys:
                try:
                    out[k] = self.get(k)
                except NotFoundError:
                    continue
            return out

    # -- writes --------------------------------------------------------------------------
    @abc.abstractmethod
    def put(self, key: str, data: bytes | memoryview, *, sync: bool = True) -> None:
        """Create or overwrite ``key`` atomically."""

    @abc.abstractmethod
    def put_if_absent(self, key: str, data: bytes | memoryview, *, sync: bool = True) -> bool:
        """Create ``key`` only if absent. True if this call created it, False if it existed."""

    @abc.abstractmethod
    def replace_if_match(self, key: str, data: bytes, token: str | None) -> str:
        """Compare-and-swap. ``token=None`` means the key must not exist. Returns the new
        token; raises ConflictError if the current token differs."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; no error if it is already gone."""

    def put_many(self, items: Mapping[str, bytes | memoryview], *, sync: bool = True) -> None:
        """``put`` every item (each one atomic; the batch is not). Backends may batch this."""
        items = dict(items)
        if len(items) <= 1:
            for k, v in items.items():
                self.put(k, v, sync=sync)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.capabilities.concurrent_io) as pool:
            list(pool.map(lambda kv: self.put(kv[0], kv[1], sync=sync), items.items()))

    def delete_many(self, keys: Iterable[str]) -> None:
        """``delete`` every key (idempotent). Backends may batch this."""
        for k in keys:
            self.delete(k)

    def flush(self) -> None:  # noqa: B027 - optional hook, default is a no-op
        """Make every earlier write durable (for writes made with ``sync=False``)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and file handles."""

    def __enter__(self) -> ObjectStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


A = TypeVar("A")
B = TypeVar("B")


def together(store: ObjectStore, first: Callable[[], A], second: Callable[[], B]) -> tuple[A, B]:
    """Both results of two independent calls on ``store``: on a remote store their requests
    are in flight together (one round trip, not two); on a local one they are made one
    after the other (no thread, no import for the light commands). An exception of either
    is raised once both are done."""
    if store.capabilities.local:
        return first(), second()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="casstore-together") as pool:
        a = pool.submit(first)
        try:
            b = second()
        finally:
            a.exception()  # wait for it either way
        return a.result(), b
