"""Child-process bodies for the conformance suite (spawned, so they must be importable).

Kept apart from :mod:`casstore.testing.store_suite` so a child imports neither pytest nor the
test module: each child opens the store again from ``(url, storage_options)``.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
import traceback
from collections.abc import Callable
from typing import Any

from casstore.errors import ConflictError, NotFoundError, TransientBackendError

StoreSpec = tuple[str, dict[str, Any]]


def in_environment(env: dict[str, str], target: Callable[..., None], *args: Any) -> None:
    """Run ``target(*args)`` under ``env`` (a forkserver child starts with the server's)."""
    os.environ.clear()
    os.environ.update(env)
    target(*args)


def _open(spec: StoreSpec) -> Any:
    from casstore.store import open_store

    url, options = spec
    return open_store(url, **options)


def race_put_if_absent(spec: StoreSpec, key: str, payload: bytes, barrier: Any, out: Any) -> None:
    """Wait for every racer, then try to create ``key``; report (payload, created)."""
    try:
        store = _open(spec)
        store.exists("warm-up")  # connect before the race starts
        barrier.wait(timeout=60)
        out.put((payload, store.put_if_absent(key, payload)))
        store.close()
    except BaseException:
        out.put(("error", traceback.format_exc()))


def cas_increment(store: Any, key: str) -> int:
    """Add one to the decimal counter at ``key`` by compare-and-swap; retry lost races.

    A transient failure of the read is retried a few times (a read changes nothing; moto's
    server now and then answers a GET racing a PUT of the same key with a 500, which the
    RetryingStore above a backend absorbs in real use). A transient failure of the write is
    uncertain (it may have applied), so it is not retried: the test fails on it."""
    reads_failed = 0
    while True:
        try:
            data, token = store.get_with_token(key)
        except NotFoundError:
            data, token = b"0", None
        except TransientBackendError:
            reads_failed += 1
            if reads_failed > 5:
                raise
            time.sleep(0.05 * reads_failed)
            continue
        try:
            store.replace_if_match(key, b"%d" % (int(data) + 1), token)
            return int(data) + 1
        except ConflictError:
            continue


def race_cas_increments(spec: StoreSpec, key: str, count: int, barrier: Any, out: Any) -> None:
    try:
        store = _open(spec)
        store.exists("warm-up")
        barrier.wait(timeout=60)
        for _ in range(count):
            cas_increment(store, key)
        out.put(("ok", count))
        store.close()
    except BaseException:
        out.put(("error", traceback.format_exc()))


def framed(seed: int, size: int) -> bytes:
    """A self-checking payload: length + blake2b of the body, then the body."""
    body = hashlib.shake_256(b"%d" % seed).digest(size)
    return struct.pack(">Q", size) + hashlib.blake2b(body).digest() + body


def is_whole_frame(data: bytes) -> bool:
    if len(data) < 72:
        return False
    (size,) = struct.unpack(">Q", data[:8])
    body = data[72:]
    return len(body) == size and hashlib.blake2b(body).digest() == data[8:72]


def write_forever(spec: StoreSpec, prefix: str, size: int, started: Any, sync: bool) -> None:
    """Until killed: overwrite a few keys with large framed objects (``put``), create fresh
    ones (``put_if_absent``) and move a small ref by compare-and-swap, all under ``prefix``."""
    store = _open(spec)
    payloads = [framed(i, size) for i in range(4)]
    started.set()
    i = 0
    while True:
        payload = payloads[i % len(payloads)]
        store.put(f"{prefix}put-{i % 3}", payload, sync=sync)
        store.put_if_absent(f"{prefix}fresh-{os.getpid()}-{i}", payload, sync=sync)
        cas_increment(store, f"{prefix}ref")
        i += 1
