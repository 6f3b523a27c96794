"""casstore.store.base.together: two independent calls, in flight together on a remote store."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from casstore.errors import ConflictError, NotFoundError
from casstore.store import open_store
from casstore.store.base import together
from casstore.testing.stores import RemoteLookingStore


def test_a_remote_store_runs_both_at_once_and_a_local_one_in_turn(tmp_path: Path) -> None:
    local = open_store(str(tmp_path))
    barrier = threading.Barrier(2, timeout=10)
    threads: list[str] = []

    def meet(value: int) -> int:
        threads.append(threading.current_thread().name)
        barrier.wait()
        return value

    assert together(RemoteLookingStore(local), lambda: meet(1), lambda: meet(2)) == (1, 2)
    assert len(set(threads)) == 2  # two threads met at the barrier
    threads.clear()
    order: list[str] = []
    assert together(local, lambda: order.append("a") or 1, lambda: order.append("b") or 2) == (1, 2)
    assert order == ["a", "b"]  # one after the other, in the caller's thread


@pytest.mark.parametrize("failing", ["first", "second"])
def test_an_error_is_raised_once_both_calls_are_done(tmp_path: Path, failing: str) -> None:
    """The other call always finishes (its effects, e.g. a session opened, are the
    caller's to undo) before the error is raised."""
    store = RemoteLookingStore(open_store(str(tmp_path)))
    done: list[str] = []
    release = threading.Event()

    def slow_ok() -> str:
        release.wait(5)
        done.append("ok")
        return "ok"

    def fails() -> str:
        release.set()
        raise ConflictError("refused")

    calls = (fails, slow_ok) if failing == "first" else (slow_ok, fails)
    with pytest.raises(ConflictError, match="refused"):
        together(store, *calls)
    assert done == ["ok"]
    with pytest.raises(NotFoundError):  # a store error inside one call surfaces as it is
        together(store, lambda: store.get("missing"), lambda: None)
