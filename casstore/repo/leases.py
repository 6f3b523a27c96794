"""Leases that let garbage collection delete safely while writers keep working.

Writers (a commit, a tag, a ref move) hold a *session*: an object ``sessions/<id>`` written
before their first existence check and removed when they are done. GC's delete phase holds the
*sweep lease* ``gc/lock``. The protocol:

* a writer writes its session, then reads ``gc/lock``; if a sweep is running it withdraws its
  session, waits for the sweep to end, and starts over;
* the sweeper writes ``gc/lock``, then waits until no live session remains, then re-reads
  every root (refs, versions, manifests) and deletes only what is still unreferenced.

Either the writer's session is visible to the sweeper (which then waits for it and sees the
manifest it published), or the writer saw the lease (and waits). So a writer never relies on a
chunk that a sweep is deleting. Only the short delete phase excludes writers; marking and
planning run alongside them. Stale leases (a holder killed with -9) are detected by age: a
session not refreshed within ``session_timeout`` is reaped by the sweeper, and a writer checks
its session still exists before publishing (a reaped writer fails cleanly and can retry).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

from casstore.errors import ConflictError, InvalidInputError, NotFoundError
from casstore.store.base import ObjectStore

SESSIONS = "sessions/"
GC_LOCK = "gc/lock"


@dataclass(frozen=True)
class LeaseSettings:
    """Timeouts in seconds: a session or the sweep lease not refreshed within its timeout is
    stale; ``wait_timeout`` bounds how long a writer waits for a sweep (and a sweep for
    writers). The CLI builds these from ``$CASSTORE_SESSION_TIMEOUT``,
    ``$CASSTORE_LOCK_TIMEOUT`` and ``$CASSTORE_LEASE_WAIT`` (:meth:`from_env`)."""

    session_timeout: float = 300.0
    lock_timeout: float = 120.0
    wait_timeout: float = 600.0
    poll: float = 0.05

    ENV: ClassVar[dict[str, str]] = {
        "session_timeout": "CASSTORE_SESSION_TIMEOUT",
        "lock_timeout": "CASSTORE_LOCK_TIMEOUT",
        "wait_timeout": "CASSTORE_LEASE_WAIT",
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> LeaseSettings:
        """Settings with any of :attr:`ENV`'s variables set in ``environ`` applied."""
        given: dict[str, float] = {}
        for name, var in cls.ENV.items():
            if environ.get(var):
                try:
                    given[name] = float(environ[var])
                except ValueError:
                    raise InvalidInputError(f"${var} must be a number of seconds") from None
        return cls(**given)


def _now() -> float:
    return time.time()


def _body(kind: str) -> bytes:
    return json.dumps({"kind": kind, "host": socket.gethostname(), "pid": os.getpid(),
                       "time": _now()}).encode()


class Session:
    """A writer's live session. ``check()`` before publishing anything."""

    def __init__(self, store: ObjectStore, key: str, timeout: float) -> None:
        self.store, self.key, self.timeout = store, key, timeout
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.timeout / 4):
            try:
                if self.store.exists(self.key):
                    self.store.put(self.key, _body("session"))
            except Exception:  # the check() before publishing catches a lost session
                pass

    def check(self) -> None:
        if not self.store.exists(self.key):
            raise ConflictError("this write session expired (a garbage collection reaped it "
                                "as stale); nothing was published, run the command again")

    def close(self) -> None:
        self._stop.set()
        self.store.delete(self.key)


class Leases:
    """Sessions for writers, the sweep lease for GC (see the module docstring)."""

    def __init__(self, store: ObjectStore, settings: LeaseSettings | None = None) -> None:
        self.store = store
        self.settings = settings or LeaseSettings()

    def _lock_age(self) -> float | None:
        try:
            info = self.store.stat(GC_LOCK)
        except NotFoundError:
            return None
        return _now() - info.mtime

    @contextmanager
    def session(self, kind: str = "commit") -> Iterator[Session]:
        """Hold a writer session; waits while a GC sweep is deleting."""
        deadline = _now() + self.settings.wait_timeout
        delay = self.settings.poll
        while True:
            key = f"{SESSIONS}{uuid.uuid4().hex}"
            self.store.put(key, _body(kind))
            age = self._lock_age()
            if age is None or age > self.settings.lock_timeout:
                break
            self.store.delete(key)
            if _now() > deadline:
                raise ConflictError("a garbage collection sweep is still running; try later")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        s = Session(self.store, key, self.settings.session_timeout)
        try:
            yield s
        finally:
            s.close()

    def live_sessions(self, reap: bool = True) -> list[str]:
        """Sessions still alive; stale ones (not refreshed in time) are removed."""
        alive = []
        for info in self.store.list(SESSIONS):
            if _now() - info.mtime > self.settings.session_timeout:
                if reap:
                    self.store.delete(info.key)
            else:
                alive.append(info.key)
        return alive

    @contextmanager
    def sweep(self, on_wait: Callable[[int], None] | None = None) -> Iterator[Callable[[], None]]:
        """Hold the sweep lease and wait until no writer session is live.

        Yields ``refresh()``, which the sweeper calls between delete batches: it re-writes the
        lease, and raises ConflictError if the lease was lost or went unrefreshed long enough
        that writers may have taken it for stale (then nothing more may be deleted).
        """
        lease = _SweepLease(self.store, self._acquire_lock(), self.settings.lock_timeout)
        try:
            deadline = _now() + self.settings.wait_timeout
            while True:
                alive = self.live_sessions()
                if not alive:
                    break
                if on_wait:
                    on_wait(len(alive))
                if _now() > deadline:
                    raise ConflictError(f"{len(alive)} writes still in flight; GC sweep "
                                        "deferred, nothing was deleted")
                time.sleep(self.settings.poll)
                lease.refresh(only_if_due=True)
            lease.refresh()
            yield lease.refresh
        finally:
            if lease.held:
                self.store.delete(GC_LOCK)

    def _acquire_lock(self) -> str:
        try:
            return self.store.replace_if_match(GC_LOCK, _body("gc"), None)
        except ConflictError:
            pass
        try:
            _, token = self.store.get_with_token(GC_LOCK)
        except NotFoundError:
            return self.store.replace_if_match(GC_LOCK, _body("gc"), None)
        age = self._lock_age()
        if age is not None and age > self.settings.lock_timeout:  # its holder died
            return self.store.replace_if_match(GC_LOCK, _body("gc"), token)
        raise ConflictError("another garbage collection is sweeping this store")


class _SweepLease:
    def __init__(self, store: ObjectStore, token: str, timeout: float) -> None:
        self.store, self.token, self.timeout = store, token, timeout
        self.last = time.monotonic()
        self.held = True

    def refresh(self, only_if_due: bool = False) -> None:
        since = time.monotonic() - self.last
        if only_if_due and since < self.timeout / 4:
            return
        if since > self.timeout / 2:
            self.held = False
            raise ConflictError("the GC sweep lease went unrefreshed too long; stopping")
        try:
            self.token = self.store.replace_if_match(GC_LOCK, _body("gc"), self.token)
        except (ConflictError, NotFoundError):
            self.held = False
            raise ConflictError("the GC sweep lease was lost; stopping the sweep") from None
        self.last = time.monotonic()
