"""Issue 18, defect 8: GC never blocks an emergency rollback, and a dead GC's lock holds
nobody up. Ref moves never wait for GC; expiry markers and move sessions (which GC waits for,
never the other way round) protect their targets, even from a mover killed mid-move."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from casstore import LeaseSettings, Repository
from casstore.errors import ConflictError
from casstore.ops.gc import GarbageCollector
from casstore.ops.retention import RetentionPolicy
from casstore.repo.keys import expired_key, ref_key
from casstore.repo.leases import GC_LOCK, SESSIONS, Leases
from casstore.repo.refs import RefStore, RefValue
from casstore.store import open_store
from casstore.store.wrappers import WrappingStore
from casstore.testing.children import child
from tests import series
from tests.cli_helpers import run

NO_WAIT = {"CASSTORE_LEASE_WAIT": "0"}  # a command that would wait for GC fails at once


def _repo(tmp_path: Path, n: int = 3) -> Repository:
    repo = Repository(str(tmp_path / "store"))
    for i in range(n):
        repo.commit("m", [series.save(tmp_path / f"v{i}" / "w.safetensors",
                                      series.tensors(seed=i))], ref="prod")
    return repo


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_defect8_rollback_never_waits_behind_a_waiting_gc(tmp_path):
    """GC holds gc/lock while it waits for an in-flight commit; a rollback goes through."""
    repo = _repo(tmp_path)
    leases = Leases(repo.store, LeaseSettings(wait_timeout=30))
    gc_has_lock = threading.Event()
    with leases.session("commit"):  # a commit in flight: the sweep must wait for it
        def gc() -> None:
            with leases.sweep(on_wait=lambda n: gc_has_lock.set()):
                pass

        t = threading.Thread(target=gc)
        t.start()
        assert gc_has_lock.wait(30)
        assert repo.store.exists(GC_LOCK)
        r = run("rollback", "m", "--to", "1.0.0", "--ref", "prod", "--reason", "p99",
                store=repo.store.url,
                env=NO_WAIT)
        assert r.code == 0, r.err
        assert t.is_alive()  # the GC is still waiting: the rollback did not wait for it
        assert Repository(repo.store.url).refs.resolve("m", "prod").version == "1.0.0"
    t.join(30)


def test_defect8_dead_gc_lock_does_not_hold_others_up(tmp_path):
    """A GC killed on this host leaves gc/lock naming its pid: seen as dead at once."""
    repo = _repo(tmp_path, 1)
    repo.store.put(GC_LOCK, json.dumps({"kind": "gc", "host": os.uname().nodename,
                                        "pid": _dead_pid(), "time": time.time()}).encode())
    r = run("commit", "m", series.save(tmp_path / "new" / "w.safetensors",
                                       series.tensors(seed=9)), store=repo.store.url,
            env=NO_WAIT)
    assert r.code == 0, r.err
    r = run("gc", "--keep-last", "5", store=repo.store.url, env=NO_WAIT)
    assert r.code == 0, r.err  # takes over the dead holder's lease at once


def test_defect8_live_gc_lock_still_excludes_writers(tmp_path):
    """Control for the test above: a lock held by a live process on this host is honoured."""
    repo = _repo(tmp_path, 1)
    repo.store.put(GC_LOCK, json.dumps({"kind": "gc", "host": os.uname().nodename,
                                        "pid": os.getpid(), "time": time.time()}).encode())
    r = run("commit", "m", series.save(tmp_path / "new" / "w.safetensors",
                                       series.tensors(seed=9)), store=repo.store.url,
            env=NO_WAIT)
    assert r.code != 0 and "sweep is still running" in r.err, r.err


def test_defect8_sweep_lease_heartbeat_keeps_a_short_timeout_safe(tmp_path):
    """A sweep longer than lock_timeout keeps its lease fresh (heartbeat thread): others
    never take a live sweeper's lease for stale."""
    repo = _repo(tmp_path, 1)
    settings = LeaseSettings(lock_timeout=3.0)
    leases = Leases(repo.store, settings)
    with leases.sweep() as refresh:
        for _ in range(5):
            time.sleep(1.0)
            assert Leases(repo.store, settings).sweep_running()
        refresh()  # still ours
    assert not repo.store.exists(GC_LOCK)


def test_defect8_ref_move_to_a_version_gc_is_expiring_is_refused(tmp_path):
    """GC wrote the expiry marker first: the mover reads it before writing and moves nothing."""
    repo = _repo(tmp_path)
    v = repo.get_version("m", "1.0.0")
    before = repo.refs.reflog("m", "prod")
    repo.store.put(expired_key("m", "1.0.0"), json.dumps({"manifest": v.id.hex()}).encode())
    with pytest.raises(ConflictError, match=r"being expired.*prod was not moved"):
        repo.rollback("m", to="1.0.0", ref="prod")
    assert repo.refs.resolve("m", "prod").version == "1.0.2"
    assert repo.refs.reflog("m", "prod") == before
    assert not list(repo.store.list(SESSIONS))  # the mover's session is gone


class _AroundRefWrite(WrappingStore):
    """Runs ``before()`` and ``after()`` around the mover's write of ``m@prod``: the moments
    between its marker reads where GC may act, or where the mover may be killed."""

    def __init__(self, inner, before=lambda: None, after=lambda: None) -> None:
        super().__init__(inner)
        self.before, self.after = before, after

    def replace_if_match(self, key: str, data: bytes, token: str | None) -> str:
        if key != ref_key("m", "prod"):
            return self.inner.replace_if_match(key, data, token)
        self.before()
        new_token = self.inner.replace_if_match(key, data, token)
        self.after()
        return new_token


def test_defect8_a_marker_written_during_the_move_moves_the_ref_back(tmp_path):
    """The second marker read, after the ref write, still catches a marker the first missed."""
    repo = _repo(tmp_path)
    v = repo.get_version("m", "1.0.0")
    mark = (expired_key("m", "1.0.0"), json.dumps({"manifest": v.id.hex()}).encode())
    # GC marks the target between the mover's first marker read and its ref write (as when
    # GC took a slow mover's session on another host for stale)
    refs = RefStore(_AroundRefWrite(repo.store, before=lambda: repo.store.put(*mark)))
    with pytest.raises(ConflictError, match=r"being expired.*prod was moved back"):
        refs.move("m", "prod", RefValue.of(v.target))
    assert repo.refs.resolve("m", "prod").version == "1.0.2"
    last = repo.refs.reflog("m", "prod")[-1]
    assert last.op == "revert" and last.trigger == "auto-revert"


def test_defect8_gc_keeps_a_version_a_ref_moved_to_while_it_marked(tmp_path):
    """The mover wrote first: GC's re-read of the refs after marking saves the version."""
    repo = _repo(tmp_path)
    gc = GarbageCollector(repo.ctx, grace_seconds=0)
    plan = gc.plan(RetentionPolicy(keep_last=1, keep_reflog_seconds=0))
    assert {e.version for e in plan.expire} >= {"1.0.0"}
    repo.refs.move("m", "prod", RefValue.of(repo.get_version("m", "1.0.0").target))
    expire = [e for e in plan.expire if e.version == "1.0.0"]
    left, saved = gc._mark_expired(expire, lambda *a: None)
    assert left == [] and [e.version for e in saved] == ["1.0.0"]
    assert not repo.store.exists(expired_key("m", "1.0.0"))


def _move_and_die(url: str, target: dict, flags: str) -> None:
    from casstore.repo.refs import Target

    def wait_for_go() -> None:  # past the first marker read, about to write the ref
        (Path(flags) / "ready").touch()
        while not (Path(flags) / "go").exists():
            time.sleep(0.01)

    # killed right after the ref write: before the second marker read or removing the session
    refs = RefStore(_AroundRefWrite(open_store(url), before=wait_for_go,
                                    after=lambda: os.kill(os.getpid(), signal.SIGKILL)))
    refs.move("m", "prod", RefValue.of(Target.parse(target)))


def test_defect8_a_mover_killed_right_after_its_ref_write_never_leaves_a_dangling_ref(tmp_path):
    """The torture suite's finding: mover reads no marker; GC marks; the mover writes the ref
    and is SIGKILLed. GC waits for the mover's session (dead at once: same host), then reads
    the refs and keeps the version the ref now points at."""
    repo = _repo(tmp_path)
    gc = GarbageCollector(repo.ctx, grace_seconds=0)
    plan = gc.plan(RetentionPolicy(keep_last=1, keep_reflog_seconds=0))
    expire = [e for e in plan.expire if e.version == "1.0.0"]
    assert expire
    target = repo.get_version("m", "1.0.0").target
    flags = tmp_path / "flags"
    flags.mkdir()
    mover = child(_move_and_die, repo.store.url, target.to_builtins(), str(flags))
    mover.start()
    deadline = time.monotonic() + 60
    while not (flags / "ready").exists():  # past its marker read, about to write the ref
        assert mover.is_alive() and time.monotonic() < deadline
        time.sleep(0.01)
    out: dict = {}
    marking = threading.Thread(target=lambda: out.update(r=gc._mark_expired(expire,
                                                                            lambda *a: None)))
    marking.start()
    while not repo.store.exists(expired_key("m", "1.0.0")):
        assert marking.is_alive() and time.monotonic() < deadline
        time.sleep(0.01)
    (flags / "go").touch()
    mover.join(60)
    marking.join(60)
    assert mover.exitcode == -signal.SIGKILL and not marking.is_alive()
    left, saved = out["r"]
    assert left == [] and [e.version for e in saved] == ["1.0.0"]
    assert repo.refs.resolve("m", "prod").version == "1.0.0"
    repo.gc(RetentionPolicy(keep_last=1, keep_reflog_seconds=0), grace_seconds=0)
    assert repo.refs.resolve("m", "prod").version == "1.0.0"
    assert "1.0.0" in [v.version for v in repo.versions("m")]
    assert repo.verify().ok, repo.verify().to_dict()


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB tmpfs (we run as root in CI); skipped where mount is refused."""
    import subprocess

    d = tmp_path / "disk"
    d.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(d)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def test_minor_gc_runs_on_a_100_percent_full_disk(small_disk, tmp_path):
    """GC must first write its lease; on a full disk it frees the reserve an earlier sweep
    left behind (gc/reserve), then sweeps, then puts the reserve back."""
    from casstore.repo.leases import RESERVE

    url = str(small_disk / "store")
    repo = Repository(url)
    for i in range(3):
        repo.commit("m", [series.save(tmp_path / f"v{i}" / "w.safetensors",
                                      series.tensors(n=4, size=64 << 10, seed=i))])
    repo.gc(RetentionPolicy(keep_last=10), grace_seconds=0)  # an earlier, routine GC
    assert repo.store.exists(RESERVE)
    # fill the disk to the last byte
    with open(small_disk / "filler", "wb", buffering=0) as f, pytest.raises(OSError):
        while True:
            f.write(b"\0" * 4096)
    r = run("gc", "--keep-last", "1", "--keep-reflog", "0", "--grace", "0", store=url)
    assert r.code == 0, r.err
    # 1.0.1 expired (1.0.0 stays: current points at it)
    assert [v.version for v in Repository(url).versions("m")] == ["1.0.0", "1.0.2"]
