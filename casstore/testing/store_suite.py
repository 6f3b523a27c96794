"""The ObjectStore conformance suite: every guarantee of :mod:`casstore.store.base`, as tests.

Subclass :class:`StoreConformance` in a test module and provide a ``store`` fixture that
yields a fresh, empty store::

    class TestMyStore(StoreConformance):
        cross_process = True            # another process can open store.url

        @pytest.fixture
        def store(self, tmp_path):
            with MyStore(tmp_path) as s:
                yield s

Multi-process tests (exactly one winner of put_if_absent, CAS counters, a writer killed with
SIGKILL) run when ``cross_process`` is true and the capabilities promise atomicity; the child
processes reopen the store with ``open_store(*self.reopen_spec(store))``.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from casstore.errors import ConflictError, InvalidInputError, NotFoundError
from casstore.store.base import Capabilities, ObjectStore
from casstore.store.probe import probe_conditional_writes
from casstore.testing import _workers
from casstore.testing.children import CONTEXT, child

BAD_KEYS = ["", "/abs", "a//b", "a/", "../x", "a/../b", "./a", "a/./b", "a\\b", "a\x00b"]


def _keys(store: ObjectStore, prefix: str) -> set[str]:
    return {info.key for info in store.list(prefix)}


def _run_children(target: Callable[..., None], args: list[tuple[Any, ...]]) -> list[Any]:
    """Start one child per args tuple (each gets a shared barrier and queue appended),
    collect one result per child, and fail on any child error."""
    barrier, out = CONTEXT.Barrier(len(args)), CONTEXT.Queue()
    procs = [child(target, *a, barrier, out) for a in args]
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    errors = [r[1] for r in results if r[0] == "error"]
    assert not errors, "child failed:\n" + "\n".join(errors)
    return results


class StoreConformance:
    """Base test class; subclasses provide a ``store`` fixture (a fresh, empty store)."""

    #: another process can open the same store via :meth:`reopen_spec`
    cross_process: bool = False
    #: processes x increments for the CAS counter test
    cas_processes: int = 3
    cas_increments: int = 8

    def reopen_spec(self, store: ObjectStore) -> tuple[str, dict[str, Any]]:
        """(url, storage_options) for ``open_store`` in a child process."""
        return store.url, {}

    def _need_processes(self, store: ObjectStore, capability: str) -> None:
        if not self.cross_process:
            pytest.skip("store cannot be shared with another process")
        if not getattr(store.capabilities, capability):
            pytest.skip(f"backend does not promise {capability}")

    # -- basics --------------------------------------------------------------------------
    def test_describes_itself(self, store: ObjectStore) -> None:
        assert isinstance(store.url, str) and store.url
        assert isinstance(store.capabilities, Capabilities)
        assert store.capabilities.concurrent_io >= 1

    def test_round_trip(self, store: ObjectStore) -> None:
        store.put("a/b/c", b"hello")
        store.put("x", memoryview(b"from a view"))
        store.put("y", bytearray(b"from a bytearray"))
        assert store.get("a/b/c") == b"hello"
        assert store.get("x") == b"from a view"
        assert store.get("y") == b"from a bytearray"
        assert isinstance(store.get("a/b/c"), bytes)

    def test_put_overwrites(self, store: ObjectStore) -> None:
        store.put("k", b"one")
        store.put("k", b"two!")
        assert store.get("k") == b"two!"
        assert store.stat("k").size == 4

    @pytest.mark.parametrize(
        ("start", "end", "expected"),
        [
            (None, None, b"0123456789"),
            (0, 3, b"012"),
            (2, None, b"23456789"),
            (None, 4, b"0123"),
            (5, 100, b"56789"),
            (4, 4, b""),
            (7, 3, b""),
            (10, None, b""),
            (50, 60, b""),
        ],
    )
    def test_ranges(self, store: ObjectStore, start: Any, end: Any, expected: bytes) -> None:
        store.put("r", b"0123456789")
        assert store.get("r", start, end) == expected

    def test_get_into(self, store: ObjectStore) -> None:
        store.put("r", b"0123456789")
        buf = bytearray(b"-" * 16)
        assert store.get_into("r", buf) == 10
        assert bytes(buf) == b"0123456789------"
        assert store.get_into("r", bytearray(4)) == 10  # too small: the size, to call get
        store.put("e", b"")
        assert store.get_into("e", buf) == 0

    def test_negative_range_is_refused(self, store: ObjectStore) -> None:
        store.put("r", b"0123456789")
        with pytest.raises(InvalidInputError):
            store.get("r", -3)
        with pytest.raises(InvalidInputError):
            store.get("r", 0, -1)

    def test_missing_object(self, store: ObjectStore) -> None:
        for call in (
            lambda: store.get("nope"),
            lambda: store.get("nope", 1, 2),
            lambda: store.get("nope", 3, 3),
            lambda: store.get_with_token("nope"),
            lambda: store.stat("nope"),
            lambda: store.get_many(["nope"]),
            lambda: store.get_into("nope", bytearray(8)),
        ):
            with pytest.raises(NotFoundError) as info:
                call()
            assert isinstance(info.value, FileNotFoundError)
        assert not store.exists("nope")
        assert not store.exists("dir/nope")

    def test_a_folder_is_not_an_object(self, store: ObjectStore) -> None:
        store.put("dir/inner", b"x")
        assert not store.exists("dir")
        with pytest.raises(NotFoundError):
            store.get("dir")

    @pytest.mark.parametrize("key", BAD_KEYS)
    def test_bad_keys_are_refused(self, store: ObjectStore, key: str) -> None:
        for call in (
            lambda: store.put(key, b"x"),
            lambda: store.put_if_absent(key, b"x"),
            lambda: store.replace_if_match(key, b"x", None),
            lambda: store.get(key),
            lambda: store.stat(key),
            lambda: store.delete(key),
        ):
            with pytest.raises(InvalidInputError):
                call()

    def test_stat(self, store: ObjectStore) -> None:
        store.put("s", b"12345")
        info = store.stat("s")
        assert (info.key, info.size) == ("s", 5)
        assert abs(info.mtime - time.time()) < 600

    def test_empty_object(self, store: ObjectStore) -> None:
        store.put("empty", b"")
        assert store.get("empty") == b""
        assert store.get("empty", 0, 10) == b""
        assert store.stat("empty").size == 0
        assert store.put_if_absent("empty2", b"")
        assert store.get_with_token("empty2")[0] == b""
        assert {"empty", "empty2"} <= _keys(store, "")

    def test_large_object(self, store: ObjectStore) -> None:
        data = os.urandom(16 << 20)
        store.put("big", data)
        assert store.stat("big").size == len(data)
        assert store.get("big") == data
        assert store.get("big", 5 << 20, (5 << 20) + 4097) == data[5 << 20 : (5 << 20) + 4097]

    # -- create-if-absent and compare-and-swap -------------------------------------------
    def test_put_if_absent(self, store: ObjectStore) -> None:
        assert store.put_if_absent("once", b"first") is True
        assert store.put_if_absent("once", b"second") is False
        assert store.get("once") == b"first"

    def test_replace_if_match(self, store: ObjectStore) -> None:
        t1 = store.replace_if_match("ref", b"v1", None)
        with pytest.raises(ConflictError):
            store.replace_if_match("ref", b"again", None)
        data, token = store.get_with_token("ref")
        assert (data, token) == (b"v1", t1)
        t2 = store.replace_if_match("ref", b"v2", t1)
        assert t2 != t1
        assert store.get_with_token("ref") == (b"v2", t2)
        with pytest.raises(ConflictError):
            store.replace_if_match("ref", b"stale", t1)
        assert store.get("ref") == b"v2"

    def test_replace_if_match_on_missing_key(self, store: ObjectStore) -> None:
        store.put("other", b"v")
        _, token = store.get_with_token("other")
        with pytest.raises(ConflictError):
            store.replace_if_match("missing", b"v", token)
        assert not store.exists("missing")

    def test_put_changes_the_token(self, store: ObjectStore) -> None:
        t1 = store.replace_if_match("ref", b"v1", None)
        store.put("ref", b"overwritten")
        with pytest.raises(ConflictError):
            store.replace_if_match("ref", b"v2", t1)

    def test_replace_if_match_after_put_if_absent(self, store: ObjectStore) -> None:
        assert store.put_if_absent("ref", b"v1")
        _, token = store.get_with_token("ref")
        store.replace_if_match("ref", b"v2", token)
        assert store.get("ref") == b"v2"

    def test_probe_conditional_writes(self, store: ObjectStore) -> None:
        assert probe_conditional_writes(store) is True
        assert not _keys(store, "tmp/")

    def test_threads_race_put_if_absent(self, store: ObjectStore) -> None:
        n = 8
        barrier = threading.Barrier(n)

        def racer(i: int) -> tuple[bytes, bool]:
            payload = b"writer-%d" % i
            barrier.wait()
            return payload, store.put_if_absent("race", payload)

        with ThreadPoolExecutor(n) as pool:
            results = list(pool.map(racer, range(n)))
        winners = [p for p, created in results if created]
        assert len(winners) == 1
        assert store.get("race") == winners[0]

    def test_threads_race_cas_counter(self, store: ObjectStore) -> None:
        n, m = 4, 10
        with ThreadPoolExecutor(n) as pool:
            list(
                pool.map(
                    lambda _: [_workers.cas_increment(store, "ctr") for _ in range(m)], range(n)
                )
            )
        assert store.get("ctr") == b"%d" % (n * m)

    def test_processes_race_put_if_absent(self, store: ObjectStore) -> None:
        self._need_processes(store, "atomic_create")
        spec = self.reopen_spec(store)
        args = [(spec, "race", b"process-%d" % i) for i in range(4)]
        results = _run_children(_workers.race_put_if_absent, args)
        winners = [p for p, created in results if created]
        assert len(winners) == 1
        assert store.get("race") == winners[0]

    def test_processes_race_cas_counter(self, store: ObjectStore) -> None:
        self._need_processes(store, "conditional_replace")
        spec = self.reopen_spec(store)
        n, m = self.cas_processes, self.cas_increments
        _run_children(_workers.race_cas_increments, [(spec, "ctr", m)] * n)
        assert store.get("ctr") == b"%d" % (n * m)

    def test_killed_writer_leaves_no_partial_object(self, store: ObjectStore) -> None:
        if not self.cross_process:
            pytest.skip("store cannot be shared with another process")
        rng = random.Random(1234)
        for round_ in range(3):
            started = CONTEXT.Event()
            args = (self.reopen_spec(store), "killed/", 3 << 20, started, round_ % 2 == 0)
            proc = child(_workers.write_forever, *args)
            proc.start()
            try:
                assert started.wait(60), "writer did not start"
                time.sleep(rng.uniform(0.05, 0.4))
            finally:
                proc.kill()
                proc.join(30)
            for info in store.list("killed/"):
                data = store.get(info.key)
                if info.key != "killed/ref":
                    assert _workers.is_whole_frame(data), f"partial object under {info.key}"
            # a writer killed inside a compare-and-swap must not leave the key locked
            before = int(store.get("killed/ref")) if store.exists("killed/ref") else 0
            assert _workers.cas_increment(store, "killed/ref") == before + 1

    # -- listing, deleting, batches ------------------------------------------------------
    def test_list_by_prefix(self, store: ObjectStore) -> None:
        keys = ["chunks/ab/1", "chunks/ab/2", "chunks/ac/3", "manifests/x", "models/m/refs/main"]
        for i, k in enumerate(keys):
            store.put(k, b"x" * i)
        assert _keys(store, "") == set(keys)
        assert _keys(store, "chunks/") == set(keys[:3])
        assert _keys(store, "chunk") == set(keys[:3])
        assert _keys(store, "chunks/a") == set(keys[:3])
        assert _keys(store, "chunks/ab") == set(keys[:2])
        assert _keys(store, "chunks/ab/") == set(keys[:2])
        assert _keys(store, "chunks/ab/2") == {"chunks/ab/2"}
        assert _keys(store, "models/m/refs/") == {"models/m/refs/main"}
        assert _keys(store, "nothing/") == set()
        assert _keys(store, "chunks/zz") == set()
        sizes = {i.key: i.size for i in store.list("")}
        assert sizes == {k: i for i, k in enumerate(keys)}

    @pytest.mark.parametrize("prefix", ["/abs", "../", "a/../b", "a//", "a\\b"])
    def test_bad_prefixes_are_refused(self, store: ObjectStore, prefix: str) -> None:
        with pytest.raises(InvalidInputError):
            list(store.list(prefix))

    def test_list_hides_reserved_folders(self, store: ObjectStore) -> None:
        store.put("tmp/scratch", b"t")
        store.put("data", b"d")
        store.replace_if_match("ref", b"r", None)  # may create lock files
        assert _keys(store, "") == {"data", "ref"}
        assert "tmp/scratch" in _keys(store, "tmp/")

    def test_list_is_never_stale_after_own_writes(self, store: ObjectStore) -> None:
        assert _keys(store, "p/") == set()
        assert not store.exists("p/a")
        store.put("p/a", b"1")
        assert _keys(store, "p/") == {"p/a"}
        assert store.exists("p/a")
        assert store.put_if_absent("p/b", b"2")
        assert _keys(store, "p/") == {"p/a", "p/b"}
        store.delete("p/a")
        assert _keys(store, "p/") == {"p/b"}
        assert not store.exists("p/a")

    def test_delete_is_idempotent(self, store: ObjectStore) -> None:
        store.put("d", b"x")
        store.delete("d")
        assert not store.exists("d")
        store.delete("d")
        store.delete("never/existed")
        with pytest.raises(NotFoundError):
            store.get("d")
        assert store.put_if_absent("d", b"again")

    def test_delete_many(self, store: ObjectStore) -> None:
        for i in range(5):
            store.put(f"dm/{i}", b"x")
        store.delete_many(["dm/0", "dm/1", "dm/missing"])
        assert _keys(store, "dm/") == {"dm/2", "dm/3", "dm/4"}

    def test_exists_many(self, store: ObjectStore) -> None:
        present = [f"e/{i}" for i in range(12)]
        for k in present:
            store.put(k, b"x")
        asked = [*present, "e/missing", "f/none"]
        assert store.exists_many(asked) == set(present)
        assert store.exists_many([]) == set()
        assert store.exists_many(["e/1"]) == {"e/1"}

    def test_get_many(self, store: ObjectStore) -> None:
        objects = {f"g/{i}": b"v%d" % i for i in range(12)}
        store.put_many(objects)
        assert store.get_many(list(objects)) == objects
        assert store.get_many([]) == {}
        with pytest.raises(NotFoundError):
            store.get_many(["g/1", "g/missing", "g/2"])

    def test_sync_false_then_flush(self, store: ObjectStore) -> None:
        store.put("lazy/a", b"a", sync=False)
        assert store.put_if_absent("lazy/b", b"b", sync=False)
        store.put_many({"lazy/c": b"c"}, sync=False)
        assert store.get("lazy/a") == b"a"  # visible before flush
        store.flush()
        store.flush()
        assert store.get_many(["lazy/a", "lazy/b", "lazy/c"]) == {
            "lazy/a": b"a",
            "lazy/b": b"b",
            "lazy/c": b"c",
        }
