"""Follower acknowledgements: which version each serving process holds, with a heartbeat.

Each follower owns one small object ``followers/<model>/<ref>/<id>``, rewritten on every swap,
failure and heartbeat; it carries the follower's live figures (:mod:`casstore.serving.live`).
``status`` lists them; ``rollback --wait`` polls them until every live follower serves the
target (a follower whose heartbeat is older than ``3 x interval + 5 s``
counts as gone; heartbeats come from their own thread, so a long load does not look dead).
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from casstore.errors import CorruptObjectError, NotFoundError
from casstore.repo.keys import FOLLOWERS, check_name, follower_key
from casstore.store.base import ObjectStore


@dataclass
class FollowerAck:
    id: str
    model: str
    ref: str
    versions: list[str]  # what it serves now (two during a split)
    ref_seq: int | None  # the ref move it has applied
    heartbeat: float  # time.time() of the follower's last write
    interval: float  # seconds between heartbeats (liveness is judged from it)
    host: str = ""
    pid: int = 0
    state: str = "ok"  # ok | loading | failed
    last_error: str = ""  # empty again once the follower recovers
    failed_version: str = ""
    failed_seq: int | None = None  # the ref move whose versions failed to load or check
    swaps: int = 0
    poll_interval: float = 0.0
    checked: float = 0.0  # time.time() of the last successful read of the ref
    extra: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)  # LiveWindow.snapshot(): live.py

    @property
    def age(self) -> float:
        return max(0.0, time.time() - self.heartbeat)

    @property
    def live(self) -> bool:
        return self.age <= 3 * self.interval + 5.0

    def to_dict(self) -> dict[str, Any]:
        checked = round(max(0.0, time.time() - self.checked), 3) if self.checked else None
        return {
            **asdict(self),
            "age_seconds": round(self.age, 3),
            "checked_age_seconds": checked,
            "live": self.live,
        }


_FIELDS = {f.name for f in fields(FollowerAck)}  # unknown keys (newer followers) are ignored


def write_ack(store: ObjectStore, ack: FollowerAck) -> None:
    store.put(
        follower_key(ack.model, ack.ref, ack.id), json.dumps(asdict(ack)).encode(), sync=False
    )


def remove_ack(store: ObjectStore, model: str, ref: str, follower_id: str) -> None:
    store.delete(follower_key(model, ref, follower_id))


def read_acks(store: ObjectStore, model: str, ref: str | None = None) -> list[FollowerAck]:
    prefix = f"{FOLLOWERS}{check_name('model', model)}/"
    if ref is not None:
        prefix += f"{check_name('ref', ref)}/"
    keys = [i.key for i in store.list(prefix)]
    try:
        raws = store.get_many(keys)
    except NotFoundError:  # a follower left between list and get: read the rest one by one
        raws = {}
        for key in keys:
            with contextlib.suppress(NotFoundError):
                raws[key] = store.get(key)
    out = []
    for key, raw in raws.items():
        try:
            doc = json.loads(raw)
            out.append(FollowerAck(**{k: v for k, v in doc.items() if k in _FIELDS}))
        except (ValueError, TypeError, AttributeError) as e:
            raise CorruptObjectError(f"follower acknowledgement {key} is unreadable: {e}") from e
    return sorted(out, key=lambda a: a.id)


def wait_for_followers(
    store: ObjectStore,
    model: str,
    ref: str,
    versions: set[str],
    *,
    timeout: float,
    poll: float = 0.2,
    seq: int | None = None,
) -> tuple[bool, list[FollowerAck]]:
    """Wait until every live follower of ``model@ref`` serves exactly ``versions``.

    Returns (all done, the last acknowledgements seen) as soon as that holds, when a live
    follower reports that the move ``seq`` failed to load or failed its health check (it will
    not serve it: waiting longer cannot help), or at the timeout. With no live follower it is
    done (the caller decides whether nobody listening is acceptable).
    """
    deadline = time.monotonic() + timeout
    while True:
        acks = [a for a in read_acks(store, model, ref) if a.live]
        if all(set(a.versions) == versions for a in acks):
            return True, acks
        if seq is not None and any(failed_move(a, seq) for a in acks):
            return False, acks
        if time.monotonic() >= deadline:
            return False, acks
        time.sleep(poll)


def failed_move(ack: FollowerAck, seq: int) -> bool:
    """Whether ``ack`` says its follower failed to take the ref move ``seq``."""
    return ack.state == "failed" and ack.failed_seq == seq
