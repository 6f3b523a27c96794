"""Leases that let garbage collection delete safely while writers keep working.

Writers that store data (a commit, a tag, a transfer) hold a *session*: an object
``sessions/<id>`` written before their first existence check and removed when they are done.
GC's delete phase holds the *sweep lease* ``gc/lock``. The protocol:

* a writer writes its session, then reads ``gc/lock``; if a sweep is running it withdraws its
  session, waits for the sweep to end, and starts over;
* the sweeper writes ``gc/lock``, then waits until the sessions live at that moment end, then
  re-reads every root (refs, versions, manifests) and deletes only what is still unreferenced.

Either the writer's session is visible to the sweeper (which then waits for it and sees the
manifest it published), or the writer saw the lease (and waits). So a writer never relies on a
chunk that a sweep is deleting. Only the short delete phase excludes writers; marking and
planning run alongside them.

Ref moves (rollback, promote, advance) never wait for GC: they write only a ref, and the
target's completeness is protected by expiry markers instead (see
:meth:`casstore.repo.refs.RefStore.move` and ``GarbageCollector.execute``). A mover writes a
*move session* (:func:`move_session`: a session that does not look at ``gc/lock``), reads
the target's marker (refusing if there is one), writes the ref, reads the marker again and
removes its session. GC writes the markers of the versions it expires, waits until every
session live at that moment has ended (a dead mover's is recognised at once on its host, by age
elsewhere), then re-reads the refs. A mover whose session GC saw has finished or died before
GC reads the refs, so GC sees where it left the ref (even if it was killed right after writing
it); a mover whose session GC did not see wrote it after the markers, so its first read finds
the marker and it moves nothing. Either way a version a ref points at is never deleted.

Dead holders: the sweep lease and every session name their host and pid, so a holder that
died on this host is recognised at once; one on another host by age. A heartbeat thread
refreshes the sweep lease every ``lock_timeout / 4``, so a short ``lock_timeout`` (default
30 s) is safe however long a sweep runs, and a dead GC holds nobody up for longer.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

from casstore.errors import (
    BackendError,
    CasstoreError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
)
from casstore.store.base import ObjectStore

SESSIONS = "sessions/"
GC_LOCK = "gc/lock"
RESERVE = "gc/reserve"
RESERVE_SIZE = 256 << 10
"""Space a GC sweep leaves behind for the next one: on a 100 % full disk GC could not even
write its lease; it then frees this object first (a stand-in for a filesystem's reserved
blocks) and puts it back after sweeping."""


@dataclass(frozen=True)
class LeaseSettings:
    """Timeouts in seconds: a session or the sweep lease not refreshed within its timeout is
    stale; ``wait_timeout`` bounds how long a writer waits for a sweep (and a sweep for
    writers). The CLI builds these from ``$CASSTORE_SESSION_TIMEOUT``,
    ``$CASSTORE_LOCK_TIMEOUT`` and ``$CASSTORE_LEASE_WAIT`` (:meth:`from_env`)."""

    session_timeout: float = 300.0
    lock_timeout: float = 30.0
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


def holder_is_dead(body: bytes) -> bool:
    """True if a lease body names a process on this host that no longer exists."""
    try:
        info = json.loads(body)
        host, pid = info["host"], int(info["pid"])
    except (ValueError, KeyError, TypeError):
        return False
    if host != socket.gethostname() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


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


def _put_session(store: ObjectStore, kind: str) -> str:
    """Write a new session object (a fresh random name) and return its key."""
    key = f"{SESSIONS}{os.urandom(16).hex()}"
    store.put(key, _body(kind))
    return key


@contextmanager
def move_session(store: ObjectStore) -> Iterator[None]:
    """A ref move's session, held from before it reads GC's expiry marker until after it has
    written the ref and read the marker again (a few requests). Unlike a writer's session it
    never waits for a sweep: a rollback must not wait on GC. GC waits for it instead, between
    writing its markers and re-reading the refs (see the module docstring)."""
    key = _put_session(store, "move")
    try:
        yield
    finally:
        with contextlib.suppress(CasstoreError):  # a leftover is reaped once stale or dead
            store.delete(key)


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

    def sweep_running(self) -> bool:
        """True if a live GC holds the sweep lease (not stale, holder not dead)."""
        try:
            body = self.store.get(GC_LOCK)
        except NotFoundError:
            return False
        age = self._lock_age()
        return age is not None and age <= self.settings.lock_timeout and not holder_is_dead(body)

    @contextmanager
    def session(self, kind: str = "commit") -> Iterator[Session]:
        """Hold a writer session; waits while a GC sweep is deleting."""
        deadline = _now() + self.settings.wait_timeout
        delay = self.settings.poll
        while True:
            key = _put_session(self.store, kind)
            if not self.sweep_running():
                break
            self.store.delete(key)
            if _now() > deadline:
                raise ConflictError("a garbage collection sweep is still running; try later")
            # retry soon, at a jittered pace: a writer that backs off for seconds starves
            # behind back-to-back sweeps (each retry lands inside the next one)
            time.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, 4 * self.settings.poll)
        s = Session(self.store, key, self.settings.session_timeout)
        try:
            yield s
        finally:
            s.close()

    def live_sessions(self, reap: bool = True) -> list[str]:
        """Sessions still alive; stale ones (not refreshed in time) are removed."""
        alive = []
        for info in self.store.list(SESSIONS):
            stale = _now() - info.mtime > self.settings.session_timeout
            if not stale:
                try:
                    stale = holder_is_dead(self.store.get(info.key))
                except NotFoundError:
                    continue  # ended meanwhile
            if stale:
                if reap:
                    self.store.delete(info.key)
            else:
                alive.append(info.key)
        return alive

    def await_sessions(
        self, refresh: Callable[[], None], on_wait: Callable[[int], None] | None = None
    ) -> None:
        """Wait (holding the sweep lease, refreshed by ``refresh``) until every writer or ref
        mover session live *now* has ended or died; ConflictError after ``wait_timeout``.

        Sessions that start later need no waiting: a writer's sees the sweep lease and
        withdraws, a mover's reads the expiry markers already written. So a busy roller (a
        session every few ms) cannot starve a sweep, and a sweep holds writers up only as long
        as the sessions it found."""
        deadline = _now() + self.settings.wait_timeout
        pending = set(self.live_sessions())
        while pending:
            pending &= set(self.live_sessions())
            if not pending:
                break
            if on_wait:
                on_wait(len(pending))
            if _now() > deadline:
                raise ConflictError(f"{len(pending)} writes still in flight; GC sweep "
                                    "deferred, nothing was deleted")
            time.sleep(self.settings.poll)
            refresh()
        refresh()

    @contextmanager
    def sweep(self, on_wait: Callable[[int], None] | None = None) -> Iterator[Callable[[], None]]:
        """Hold the sweep lease and wait for the writer sessions already live.

        Yields ``refresh()``, which the sweeper calls between delete batches: it re-writes the
        lease, and raises ConflictError if the lease was lost or went unrefreshed long enough
        that writers may have taken it for stale (then nothing more may be deleted).
        """
        lease = _SweepLease(self.store, self._acquire_lock(), self.settings.lock_timeout)
        lease.start()
        try:
            self.await_sessions(lease.refresh, on_wait)
            yield lease.refresh
        finally:
            if lease.stop():
                self.store.delete(GC_LOCK)

    def keep_reserve(self) -> None:
        """Best effort: (re)create :data:`RESERVE` for the next sweep on a full disk."""
        with contextlib.suppress(CasstoreError):
            self.store.put_if_absent(RESERVE, bytes(RESERVE_SIZE))

    def _acquire_lock(self) -> str:
        try:
            return self._create_lock()
        except ConflictError:
            pass
        try:
            body, token = self.store.get_with_token(GC_LOCK)
        except NotFoundError:
            return self.store.replace_if_match(GC_LOCK, _body("gc"), None)
        age = self._lock_age()
        if holder_is_dead(body) or (age is not None and age > self.settings.lock_timeout):
            return self.store.replace_if_match(GC_LOCK, _body("gc"), token)  # its holder died
        raise ConflictError("another garbage collection is sweeping this store")


    def _create_lock(self) -> str:
        try:
            return self.store.replace_if_match(GC_LOCK, _body("gc"), None)
        except BackendError as e:
            if e.errno != errno.ENOSPC or not self.store.exists(RESERVE):
                raise
        self.store.delete(RESERVE)  # the disk is full: use the space kept for this
        return self.store.replace_if_match(GC_LOCK, _body("gc"), None)


class _SweepLease:
    """The held sweep lease, refreshed by a heartbeat thread every ``timeout / 4``.

    :meth:`refresh` (called by the sweeper between delete batches) raises ConflictError once
    the lease is lost or went unrefreshed for ``timeout / 2`` (a stalled store or process):
    writers may then take it for stale, so nothing more may be deleted.
    """

    def __init__(self, store: ObjectStore, token: str, timeout: float) -> None:
        self.store, self.token, self.timeout = store, token, timeout
        self.last = time.monotonic()
        self.held = True
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True,
                                      name="casstore-gc-lease")

    def start(self) -> None:
        self._beat.start()

    def stop(self) -> bool:
        """Stop the heartbeat; True if the lease is still ours (the caller then deletes it)."""
        self._stop.set()
        if self._beat.is_alive():
            self._beat.join()
        return self.held

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.timeout / 4):
            try:
                self._write()
            except Exception:  # refresh() reports a lost or stale lease
                continue

    def _write(self) -> None:
        with self._lock:
            if not self.held:
                return
            try:
                self.token = self.store.replace_if_match(GC_LOCK, _body("gc"), self.token)
            except (ConflictError, NotFoundError):
                self.held = False
                return
            self.last = time.monotonic()

    def refresh(self, only_if_due: bool = False) -> None:
        """Raise ConflictError if the lease is lost or stale; rewrite it now if the heartbeat
        is late (``only_if_due`` is accepted for callers of the old signature: the heartbeat
        thread keeps the lease fresh, so a refresh is only ever written when due)."""
        if self.held and time.monotonic() - self.last > self.timeout / 4:
            self._write()  # the heartbeat is late (a busy machine): do it now
        if not self.held:
            raise ConflictError("the GC sweep lease was lost; stopping the sweep")
        if time.monotonic() - self.last > self.timeout / 2:
            self.held = False
            raise ConflictError("the GC sweep lease went unrefreshed too long; stopping")
