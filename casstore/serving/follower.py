"""A Follower keeps a model loaded that follows a ref, and swaps it without downtime.

It polls the ref object cheaply (one small read; nothing happens unless the ref's CAS token
changed), loads the new version in the background reusing every tensor whose bytes did not
change (same covering chunk digests at the same offsets), checks it (every chunk is
digest-verified by the reader; then an optional user health check on the built model), and
swaps it in with one reference assignment: new requests get the new model, in-flight ones
finish on the old. A failed load or health check keeps the old model and is reported in the
follower's acknowledgement object, which ``casstore status`` shows. A failed health check is
final for that ref move; any other load failure is retried with exponential backoff.
Before loading, the follower asks the store's trust policy (its own
:class:`~casstore.ops.trust.TrustGate`, which remembers every policy it has seen) whether the
ref may point at the new versions: a ref moved by someone with bucket access but no trusted key
to an unsigned version is refused, the old version keeps serving, and the reason is reported
(retried with backoff, so a signature added later is picked up).
A heartbeat thread keeps the acknowledgement fresh even while a long load runs.

The application reports what it sees through the follower: ``with follower.request(key) as
served:`` times a request and counts it as failed if it raises; ``follower.observe`` does the
same for a request timed elsewhere, and ``follower.record(metric, value)`` adds any number
(accuracy, click-through...). Each acknowledgement carries these per version, in time slices
(:mod:`casstore.serving.live`), for ``casstore watch`` to judge.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from casstore.errors import CasstoreError, CorruptObjectError, InvalidInputError, UntrustedError
from casstore.ops.trust import TrustGate
from casstore.repo.catalog import Version
from casstore.repo.keys import check_name
from casstore.repo.refs import RefValue, split_fraction
from casstore.repository import Repository
from casstore.serving.acks import FollowerAck, remove_ack, write_ack
from casstore.serving.live import LiveWindow

Builder = Callable[[dict[str, Any], Version], Any]
HealthCheck = Callable[[Any, Version], bool]


class HealthCheckFailed(CasstoreError):
    """The user's health check refused a loaded version (it is never served)."""


@dataclass(frozen=True)
class Served:
    """One loaded version: what requests use. Immutable; swapped as a whole."""

    version: Version
    state_dict: dict[str, Any]
    model: Any  # what ``build`` made of the state dict (the state dict itself by default)
    loaded_bytes: int = 0  # tensor bytes read from the store for this load
    reused: int = 0  # tensors taken over from the previous version in memory
    seconds: float = 0.0


@dataclass
class _State:
    value: RefValue
    seq: int
    token: str
    served: dict[str, Served] = field(default_factory=dict)  # semver -> loaded version


@dataclass
class _Failure:
    token: str
    final: bool  # a health check or corrupt data: wait for the next ref move
    attempts: int
    retry_at: float  # monotonic


def _tensor_signatures(v: Version) -> dict[str, tuple[Any, ...]]:
    """name -> (dtype, shape, covering chunk digests, offset in first chunk)."""
    out: dict[str, tuple[Any, ...]] = {}
    for f in v.manifest.files:
        spans = f.chunk_offsets()
        for t in f.tensors:
            lo, hi = t.offset, t.offset + t.length
            cover = [(bytes(d), off) for d, off, n in spans if off < hi and off + n > lo]
            first = cover[0][1] if cover else lo
            out[t.name] = (t.dtype, t.shape, tuple(d for d, _ in cover), lo - first)
    return out


class Follower:
    """Serve ``model`` as ``ref`` says, swapping to each new version as the ref moves.

    ``interval``/``jitter``: seconds between ref polls (each one small read), randomised by
    ±jitter (a fraction). ``heartbeat``: seconds between acknowledgement writes (default
    ``max(interval, 1)``); ``retry_max``: the backoff cap for retrying a failed load.
    ``live_retain``/``live_slice``: how many seconds of live figures each acknowledgement
    carries, in slices of how many seconds (a watcher's window can be at most the former).
    ``trust_anchors``: key ids that must have signed the store's first trust policy (default:
    the repository's).
    """

    def __init__(
        self,
        store: Repository | str,
        model: str,
        ref: str = "current",
        *,
        build: Builder | None = None,
        health_check: HealthCheck | None = None,
        map_location: str | None = "cpu",
        interval: float = 1.0,
        jitter: float = 0.2,
        heartbeat: float | None = None,
        retry_max: float = 60.0,
        follower_id: str | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        live_retain: float = 120.0,
        live_slice: float = 5.0,
        trust_anchors: Sequence[str] = (),
    ) -> None:
        if interval <= 0 or not 0 <= jitter < 1:
            raise InvalidInputError("interval must be > 0 and jitter in [0, 1)")
        if not (live_slice > 0 and live_retain >= live_slice):
            raise InvalidInputError("live_slice must be > 0 and live_retain >= live_slice")
        self.live = LiveWindow(live_retain, live_slice)
        self.repo = store if isinstance(store, Repository) else Repository(store)
        self.model = check_name("model", model)
        self.ref = check_name("ref", ref)
        self.build = build or (lambda sd, v: sd)
        self.health_check = health_check
        self.map_location = map_location
        self.interval, self.jitter = float(interval), float(jitter)
        self.heartbeat_every = float(heartbeat) if heartbeat else max(self.interval, 1.0)
        self.retry_max = float(retry_max)
        self.id = check_name(
            "follower",
            follower_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}",
        )
        self.on_event = on_event
        self.trust = TrustGate(self.repo.ctx, trust_anchors or self.repo.rollout.trust.anchors)
        self._state: _State | None = None
        self._poll_failed = False  # the last poll raised (its error shows until one works)
        self._failure: _Failure | None = None
        self._lock = threading.Lock()  # one load at a time
        self._ack_lock = threading.Lock()  # one acknowledgement write at a time, in order
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.ack = FollowerAck(
            self.id,
            self.model,
            self.ref,
            [],
            None,
            time.time(),
            self.heartbeat_every,
            socket.gethostname(),
            os.getpid(),
            poll_interval=self.interval,
        )

    # -- requests ------------------------------------------------------------------------
    def model_for(self, request_key: str | None = None) -> Served:
        """The loaded version for a request (sticky within a split, as ``resolve()``)."""
        st = self._state
        if st is None:
            raise InvalidInputError(f"follower of {self.model}@{self.ref} has nothing loaded yet")
        if st.value.split is None:
            return st.served[st.value.target.version]  # type: ignore[union-attr]
        s = st.value.split
        side = s.base
        if request_key is not None and split_fraction(self.model, self.ref, request_key) < s.weight:
            side = s.candidate
        return st.served[side.version]

    @contextmanager
    def request(self, request_key: str | None = None) -> Iterator[Served]:
        """Serve one request: yields the version for it, and counts it (with its latency) in
        the live figures; an exception raised inside counts as a failed request."""
        served = self.model_for(request_key)
        t0 = time.perf_counter()
        ok = False
        try:
            yield served
            ok = True
        finally:
            self.live.observe(served.version.version, time.perf_counter() - t0, ok)

    def observe(self, served: Served | str, seconds: float, ok: bool = True) -> None:
        """Count a request answered by ``served`` (or a version string) in ``seconds``."""
        self.live.observe(_semver(served), seconds, ok)

    def record(self, metric: str, value: float, served: Served | str | None = None) -> None:
        """Report a number measured while serving (by default for the version requests
        without a key get: the only one, or the base of a split; dropped while nothing is
        loaded)."""
        if served is None:
            if self._state is None:
                return
            served = self.model_for(None)
        self.live.record(_semver(served), check_name("metric", metric), value)

    @property
    def versions(self) -> list[str]:
        st = self._state
        return sorted(st.served) if st else []

    # -- following -----------------------------------------------------------------------
    def poll(self) -> bool:
        """Check the ref once; load and swap if it moved. True if a swap happened."""
        rec, token = self.repo.refs.read(self.model, self.ref)
        self.ack.checked = time.time()
        if self._poll_failed:  # the store answers again: clear the poll error
            self._poll_failed = False
            if self._failure is None and self._state is not None:
                self._report(state="ok", error="")
        if rec is None or rec.value is None or token is None:
            self._report(state="failed", error=f"{self.model}@{self.ref} does not exist")
            return False
        if self._current(token) or self._backing_off(token):
            return False
        with self._lock:
            if self._current(token) or self._backing_off(token):  # another poll got here first
                return False
            return self._apply(rec.value, rec.seq, token)

    def _current(self, token: str) -> bool:
        st = self._state
        return st is not None and st.token == token

    def _backing_off(self, token: str) -> bool:
        f = self._failure
        if f is None or f.token != token:
            return False
        return f.final or time.monotonic() < f.retry_at

    def _apply(self, value: RefValue, seq: int, token: str) -> bool:
        old = self._state
        targets = value.versions()
        wanted = [t.version for t in targets]
        served: dict[str, Served] = {}
        self._report(state="loading")
        try:
            why = self.trust.refusal(
                self.model, self.ref, [(t.version, t.manifest) for t in targets]
            )
            if why:
                raise UntrustedError(f"refused: {why}")
            for t in targets:
                have = old.served.get(t.version) if old else None
                if have is not None and have.version.id.hex() == t.manifest:
                    served[t.version] = have
                else:
                    served[t.version] = self._load(t.version, t.manifest, old)
        except Exception as e:  # keep serving the old version; report why
            self._record_failure(token, seq, wanted, e)
            return False
        self._state = _State(value, seq, token, served)  # the swap: one assignment
        self._failure = None
        self.ack.swaps += 1
        self._report(state="ok", error="", failed="", failed_seq=None)
        self._emit(
            {
                "event": "swapped",
                "versions": wanted,
                "seq": seq,
                "loaded_bytes": sum(s.loaded_bytes for s in served.values()),
                "reused": sum(s.reused for s in served.values()),
            }
        )
        return True

    def _record_failure(self, token: str, seq: int, wanted: list[str], e: Exception) -> None:
        prev = self._failure
        attempts = prev.attempts + 1 if prev is not None and prev.token == token else 1
        final = isinstance(e, (HealthCheckFailed, CorruptObjectError))
        delay = min(self.retry_max, self.interval * 2**attempts)
        self._failure = _Failure(token, final, attempts, time.monotonic() + delay)
        msg = f"{type(e).__name__}: {e}"
        if not final:
            msg += f" (attempt {attempts}; retrying in {delay:.1f}s)"
        self._report(state="failed", error=msg, failed=",".join(wanted), failed_seq=seq)
        self._emit({"event": "swap-failed", "versions": wanted, "error": msg, "final": final})

    def _load(self, semver: str, manifest: str, old: _State | None) -> Served:
        import casstore.torch as ct

        t0 = time.perf_counter()
        v = self.repo.get_version(self.model, semver)
        if v.id.hex() != manifest:  # the index and the ref disagree: serve neither
            raise CorruptObjectError(
                f"{v.name} is indexed as manifest {v.id.short()}, the ref says {manifest[:12]}"
            )
        sigs = _tensor_signatures(v)
        reuse: dict[str, Any] = {}
        if old is not None:
            for prev in old.served.values():
                prev_sigs = _tensor_signatures(prev.version)
                for name, sig in sigs.items():
                    if name not in reuse and prev_sigs.get(name) == sig and name in prev.state_dict:
                        reuse[name] = prev.state_dict[name]
        names = ct.stored_names(self.repo, self.model, semver)
        need = [n for n in names if n not in reuse]
        fresh = (
            ct.load(self.repo, self.model, semver, keys=need, map_location=self.map_location)
            if need
            else {}
        )
        sd = {n: reuse[n] if n in reuse else fresh[n] for n in names}
        built = self.build(sd, v)
        if self.health_check is not None and not self.health_check(built, v):
            raise HealthCheckFailed(f"health check failed for {v.name}")
        loaded = sum(t.numel() * t.element_size() for t in fresh.values())
        return Served(v, sd, built, loaded, len(reuse), time.perf_counter() - t0)

    def start(self, *, wait: bool = True) -> Follower:
        """Load what the ref points at (now if ``wait``, else in the background), then
        follow it in a thread while another thread keeps the acknowledgement fresh."""
        if wait:
            self.poll()
        self._threads = [
            threading.Thread(target=self._run, name=f"casstore-follow-{self.id}", daemon=True),
            threading.Thread(target=self._beat, name=f"casstore-beat-{self.id}", daemon=True),
        ]
        for t in self._threads:
            t.start()
        return self

    def _run(self) -> None:
        delay = 0.0 if self._state is None else self._next_delay()
        while not self._stop.wait(delay):
            try:
                self.poll()
            except Exception as e:  # a store hiccup must not kill the follower
                self._poll_failed = True
                self._report(
                    state="failed" if self._state is None else None,
                    error=f"poll failed: {type(e).__name__}: {e}",
                )
            delay = self._next_delay()

    def _next_delay(self) -> float:
        return self.interval * (1 + random.uniform(-1, 1) * self.jitter)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_every):
            self._report()

    def stop(self, *, forget: bool = True) -> None:
        """Stop following; ``forget`` removes the acknowledgement (a clean leave)."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.interval * 3 + 5)
        if forget:
            with self._ack_lock:
                remove_ack(self.repo.store, self.model, self.ref, self.id)

    def __enter__(self) -> Follower:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- reporting -----------------------------------------------------------------------
    def _report(
        self,
        *,
        state: str | None = None,
        error: str | None = None,
        failed: str | None = None,
        failed_seq: int | object | None = ...,
    ) -> None:
        """Update and write the acknowledgement (a heartbeat when called bare)."""
        with self._ack_lock:
            if self._stop.is_set() and self._threads:
                return  # stopped: do not resurrect a removed acknowledgement
            a = self.ack
            st = self._state
            a.heartbeat = time.time()
            a.versions = sorted(st.served) if st else []
            a.ref_seq = st.seq if st else None
            a.figures = self.live.snapshot()
            if state is not None:
                a.state = state
            if error is not None:
                a.last_error = error
            if failed is not None:
                a.failed_version = failed
            if failed_seq is not ...:
                a.failed_seq = failed_seq  # type: ignore[assignment]
            try:
                write_ack(self.repo.store, a)
            except CasstoreError:
                pass  # the next heartbeat tries again; serving goes on

    def _emit(self, event: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event({"follower": self.id, "model": self.model, "ref": self.ref, **event})


def _semver(served: Served | str) -> str:
    return served if isinstance(served, str) else served.version.version
