"""Refs, reflog and the rollback flow (local store and S3 via moto)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from casstore import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    RegressionPolicy,
    Repository,
)
from casstore.repo.refs import RefValue
from casstore.testing.children import CONTEXT, child
from casstore.testing.stores import RemoteLookingStore
from tests import series
from tests.core.conftest import needs_another_process


@pytest.fixture
def three(repo: Repository, tmp_path: Path) -> Repository:
    base = series.tensors(n=3)
    for i, (acc, vtype) in enumerate([(0.90, "release"), (0.93, "beta"), (0.95, "release")]):
        f = series.save(tmp_path / f"v{i}" / "m.safetensors", series.finetune(base, seed=i))
        repo.commit("m", [f], metrics={"accuracy": acc, "loss": 1 - acc}, version_type=vtype)
    return repo


@pytest.mark.every_backend
def test_promote_and_reflog(three: Repository):
    r = three.promote("m", "1.0.2", reason="ship it")
    assert r.ok and three.resolve("m").version == "1.0.2"
    three.promote("m", "1.0.1", ref="staging")
    refs = three.refs.list("m")
    assert {k: v.value.describe() for k, v in refs.items()} == {
        "current": "1.0.2",
        "staging": "1.0.1",
    }
    log = three.refs.reflog("m", "current")
    assert [(e.seq, e.old and e.old.describe(), e.new.describe()) for e in log] == [
        (0, None, "1.0.0"),
        (1, "1.0.0", "1.0.2"),
    ]
    assert log[1].reason == "ship it" and log[1].actor


@pytest.mark.every_backend
def test_quick_and_targeted_rollback(three: Repository):
    three.promote("m", "1.0.1")  # a beta the ref served
    three.promote("m", "1.0.2")
    r = three.rollback("m", reason="bad")
    assert r.ok and three.resolve("m").version == "1.0.0"  # 1.0.1 is a beta, not stable
    three.tag("m", "1.0.1", "stable")
    three.promote("m", "1.0.1", ref="staging")  # another ref's history does not count
    three.promote("m", "1.0.2")
    assert three.rollback("m").new.describe() == "1.0.0"  # 1.0.2 was left by a rollback
    r = three.rollback("m", to="v1.0.2")
    assert r.ok and three.resolve("m").version == "1.0.2"
    entry = three.refs.reflog("m", "current")[-1]
    assert entry.trigger == "rollback" and entry.op == "rollback"
    with pytest.raises(NotFoundError):
        three.rollback("m", to="7.7.7")


def _served(repo: Repository, ref: str = "current") -> list[str]:
    return [e.new.describe() for e in repo.refs.reflog("m", ref)]


@pytest.mark.every_backend
def test_previous_stable_follows_the_refs_reflog(three: Repository):
    """Issue 15 item 4: quick rollback goes back to what the ref served, not to the newest
    stable version with a lower number."""
    three.tag("m", "1.0.1", "stable")
    three.promote("m", "1.0.2", ref="production")
    three.promote("m", "1.0.0", ref="production")
    assert three.previous_stable("m", "production").version == "1.0.2"
    r = three.rollback("m", ref="production")
    assert r.ok and three.resolve("m", "production").version == "1.0.2"
    # 1.0.0 was left by that rollback, 1.0.2 is current: nothing else was served
    with pytest.raises(NotFoundError, match=r"passed over 1\.0\.0 \(left by rollback"):
        three.previous_stable("m", "production")


def test_previous_stable_skips_what_does_not_qualify(three: Repository):
    """Betas, deprecated versions and versions a failed health check reverted are skipped."""
    three.promote("m", "1.0.2")  # current: 1.0.0 -> 1.0.2
    three.promote("m", "1.0.1")  # a beta
    three.rollback("m", to="1.0.2", health_check=lambda v: False)  # reverted: stays 1.0.1
    assert _served(three)[-2:] == ["1.0.2", "1.0.1"]
    assert three.previous_stable("m").version == "1.0.0"
    three.tag("m", "1.0.0", "deprecated")
    with pytest.raises(NotFoundError) as e:
        three.previous_stable("m")
    assert "1.0.2 (left by revert" in str(e.value) and "1.0.0 (deprecated)" in str(e.value)


def test_previous_stable_reads_only_the_reflog_it_needs(three: Repository):
    from casstore.testing.stores import CountingStore

    for _ in range(20):
        three.promote("m", "1.0.2")
        three.promote("m", "1.0.0")
    counting = CountingStore(three.store)
    repo = Repository(counting)
    assert repo.previous_stable("m").version == "1.0.2"
    # the ref, one page of its reflog, the candidate's index entry, manifest and tags: not
    # the 41 entries of its history
    assert counting.requests <= 10, counting.counts()


@pytest.mark.every_backend
def test_rollback_undo_reverts_the_last_move(three: Repository):
    """Issue 15 item 4: ``rollback --undo`` points the ref where its last move found it."""
    with pytest.raises(InvalidInputError, match="nothing to undo"):
        three.undo("m")  # the commit created the ref
    three.promote("m", "1.0.2")
    r = three.undo("m")
    assert r.ok and three.resolve("m").version == "1.0.0"
    assert three.refs.reflog("m", "current")[-1].op == "undo"
    assert three.undo("m").ok and three.resolve("m").version == "1.0.2"  # undo twice: redo
    three.start_split("m", "1.0.1", steps=(0.5, 1.0))
    three.advance("m")
    assert three.undo("m").new.split is not None  # back into the split
    assert three.refs.get("m", "current").split.weight == 0.5


def test_failing_health_check_reverts(three: Repository):
    three.promote("m", "1.0.2")
    r = three.rollback("m", to="1.0.0", health_check=lambda v: False)
    assert not r.ok and r.reverted
    assert three.resolve("m").version == "1.0.2"
    log = three.refs.reflog("m", "current")
    assert [e.new.describe() for e in log[-2:]] == ["1.0.0", "1.0.2"]
    assert log[-1].trigger == "health-check"
    r = three.rollback("m", to="1.0.0", health_check="exit 3")
    assert not r.ok and "exited 3" in r.message
    r = three.rollback("m", to="1.0.0", health_check='test "$CASSTORE_VERSION" = 1.0.0')
    assert r.ok and three.resolve("m").version == "1.0.0"


def test_incomplete_target_refused(three: Repository):
    from casstore.repo.keys import chunk_key

    v = three.get_version("m", "1.0.2")
    three.store.delete(chunk_key(v.manifest.files[0].object_digests()[0]))
    r = three.promote("m", "1.0.2", verify=True)  # the per-chunk check, on request
    assert not r.ok and "missing" in r.message
    assert three.resolve("m").version == "1.0.0"


def test_promote_checks_only_the_index_entry_by_default(three: Repository):
    """Without --verify a promote trusts the GC protocol (an indexed version keeps its
    chunks): damage it does not look for is found by ``verify``, not by the switch."""
    from casstore.repo.keys import chunk_key

    v = three.get_version("m", "1.0.2")
    three.store.delete(chunk_key(v.manifest.files[0].object_digests()[0]))
    assert three.promote("m", "1.0.2").ok
    assert not three.verify().ok


def _about(count: int, n: int, p: float) -> bool:
    """``count`` of ``n`` keys is within 5 standard deviations of ``n * p``."""
    return abs(count - n * p) < 5 * math.sqrt(n * p * (1 - p))


def test_progressive_split_sticky(three: Repository):
    three.promote("m", "1.0.2")
    three.start_split("m", "1.0.0", steps=(0.1, 0.5, 1.0), op="rollback")
    # every resolve reads the ref: an HTTP request on S3, where fewer keys keep it quick
    n = 300 if three.store.url.startswith("s3://") else 2000
    keys = [f"user-{i}" for i in range(n)]
    at10 = {k for k in keys if three.resolve("m", "current", k).version == "1.0.0"}
    assert _about(len(at10), n, 0.1)
    three.advance("m")
    at50 = {k for k in keys if three.resolve("m", "current", k).version == "1.0.0"}
    assert at10 <= at50 and _about(len(at50), n, 0.5)  # sticky: nobody flips back
    assert three.resolve("m").version == "1.0.2"  # no key: the base
    three.advance("m")
    assert three.refs.get("m", "current").target.version == "1.0.0"
    ops = [e.op for e in three.refs.reflog("m", "current")]
    assert ops[-3:] == ["rollback", "advance", "advance"]
    with pytest.raises(InvalidInputError):
        three.advance("m")
    three.start_split("m", "1.0.2", steps=(0.25, 1.0))
    three.abort("m", reason="errors up")
    assert three.refs.get("m", "current").target.version == "1.0.0"


def test_regression_policy(three: Repository):
    policy = RegressionPolicy.parse(
        json.dumps(
            {
                "rules": [
                    {"metric": "accuracy", "direction": "higher", "threshold": 0.01},
                    {"metric": "loss", "direction": "lower", "threshold": 0.1, "relative": True},
                ]
            }
        )
    )
    three.promote("m", "1.0.2")
    out = three.check_regression("m", policy, metrics={"accuracy": 0.80})
    assert out["action"] == "rolled-back" and out["violations"]
    assert three.resolve("m").version == "1.0.0"
    assert three.refs.reflog("m", "current")[-1].trigger == "metric-regression"
    out = three.check_regression("m", policy, candidate="1.0.2")
    assert out["action"] == "promoted" and three.resolve("m").version == "1.0.2"
    out = three.check_regression("m", policy, candidate="1.0.0", act=True)
    assert out["action"] == "refused-promotion"


def test_notify_hooks(three: Repository, tmp_path: Path):
    events = []
    three.on_ref_move(events.append)
    sink = tmp_path / "events.jsonl"
    three.hooks.notify_commands.append(f"cat >> {sink}")
    three.promote("m", "1.0.1")
    assert events[-1]["new"]["target"]["version"] == "1.0.1"
    assert json.loads(sink.read_text().strip())["event"] == "ref-moved"


@pytest.mark.every_backend
def test_stale_cas_conflicts(three: Repository):
    rec, _ = three.refs.read("m", "current")
    three.promote("m", "1.0.1")
    with pytest.raises(ConflictError):
        three.refs.move("m", "current", rec.value, expected_seq=rec.seq)


def _racer(url: str, n: int, versions: list[str], out) -> None:
    repo = Repository(url)
    landed = conflicts = 0
    for i in range(n):
        spec = versions[i % len(versions)]
        try:
            rec, _ = repo.refs.read("m", "race")
            target = repo.get_version("m", spec).target
            repo.refs.move(
                "m", "race", RefValue.of(target), expected_seq=None if rec is None else rec.seq
            )
            landed += 1
        except ConflictError:
            conflicts += 1
    out.put((landed, conflicts))


@pytest.mark.every_backend
@pytest.mark.slow
@pytest.mark.parametrize("procs", [2, 8])
def test_racing_processes(three: Repository, procs: int):
    url = three.store.url
    needs_another_process(url)
    if procs > 2 and three.store.url.split("://")[0] in ("az", "gs"):
        pytest.skip(
            "Azure and GCS race 2 processes here (suite time); 8 race on local and S3, "
            "and python -m benchmarks.ref_race races 8 on every backend"
        )
    q = CONTEXT.Queue()
    ps = [child(_racer, url, 12, ["1.0.0", "1.0.1", "1.0.2"], q) for _ in range(procs)]
    for p in ps:
        p.start()
    results = [q.get(timeout=300) for _ in ps]
    for p in ps:
        p.join(60)
        assert p.exitcode == 0
    landed = sum(r[0] for r in results)
    assert landed >= 1
    log = three.refs.reflog("m", "race")
    assert len(log) == landed
    assert [e.seq for e in sorted(log, key=lambda e: e.seq)] == list(range(landed))
    for prev, nxt in zip(sorted(log, key=lambda e: e.seq), sorted(log, key=lambda e: e.seq)[1:]):
        assert nxt.old == prev.new  # a chain: no update was lost or torn
    rec, _ = three.refs.read("m", "race")
    assert rec.seq == landed - 1


@pytest.mark.slow
def test_sigkill_during_rollbacks(three: Repository):
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    url = three.store.url
    needs_another_process(url)
    script = (
        "import sys; from casstore import Repository\n"
        "r = Repository(sys.argv[1])\n"
        "i = 0\n"
        "while True:\n"
        "    r.rollback('m', to=['1.0.0', '1.0.1', '1.0.2'][i % 3]); i += 1\n"
    )
    rng = random.Random(7)
    valid = {"1.0.0", "1.0.1", "1.0.2"}
    for _ in range(5):
        p = subprocess.Popen(
            [sys.executable, "-c", script, url], env=dict(os.environ), stderr=subprocess.PIPE
        )
        time.sleep(rng.uniform(0.3, 1.2))
        p.send_signal(signal.SIGKILL)
        p.wait()
        rec, _ = three.refs.read("m", "current")  # parses: never torn
        assert rec.value.target.version in valid
        log = sorted(three.refs.reflog("m", "current"), key=lambda e: e.seq)
        assert [e.seq for e in log] == list(range(len(log)))
        assert log[-1].new == rec.value
    three.rollback("m", to="1.0.1")  # the next mover carries on
    assert three.resolve("m").version == "1.0.1"


def test_backend_ignoring_preconditions_is_refused(tmp_path: Path):
    from casstore import UnsupportedError
    from casstore.repo.config import StoreConfig
    from casstore.store import LocalStore, WrappingStore

    class IgnoresPreconditions(WrappingStore):
        """Like an S3-compatible server that accepts If-None-Match / If-Match and ignores them."""

        def put_if_absent(self, key, data, *, sync=True):
            self.inner.put(key, data, sync=sync)
            return True

        def replace_if_match(self, key, data, token):
            self.inner.put(key, bytes(data))
            return self.inner.get_with_token(key)[1]

    store = IgnoresPreconditions(LocalStore(tmp_path / "s"))
    repo = Repository(store)
    assert repo.init().conditional_writes is False
    f = series.save(tmp_path / "w.safetensors", series.tensors(n=2))
    with pytest.raises(UnsupportedError, match="single-writer"):
        repo.commit("m", [f])
    assert list(store.list("models/")) == []  # refused before anything was stored
    single = Repository(IgnoresPreconditions(LocalStore(tmp_path / "t")))
    single.init(StoreConfig(single_writer=True))
    assert single.commit("m", [f]).ref_moved == "current"


def test_listing_reads_the_refs_in_one_batch_and_survives_one_vanishing(three: Repository):
    """``refs`` lists the refs and reads their records in one batch; a ref listed and gone
    before it is read (removed meanwhile) is left out instead of failing the listing."""
    from casstore.repo.keys import ref_key
    from casstore.store.base import ObjectInfo
    from casstore.testing.stores import CountingStore

    three.promote("m", "1.0.0", ref="staging")

    class Vanishing(CountingStore):
        def list(self, prefix: str):  # type: ignore[no-untyped-def]
            yield from self.inner.list(prefix)
            if prefix.endswith("/refs/"):
                yield ObjectInfo(ref_key("m", "gone"), 10, 0.0)

    store = CountingStore(three.store)
    assert list(Repository(store).refs.list("m")) == ["current", "staging"]
    assert store.counts()["get_many"].requests == 2 and "get_with_token" not in store.counts()
    assert list(Repository(Vanishing(three.store)).refs.list("m")) == ["current", "staging"]


class _Watched(RemoteLookingStore):
    """A folder that says it is remote (so independent requests go out together) and calls
    ``seen(operation, key)`` before each read and write the ref tests below look at."""

    def __init__(self, path: Path, seen: Callable[[str, str], None]) -> None:
        from casstore.store import open_store

        super().__init__(open_store(str(path)))
        self.seen = seen

    def get(self, key, start=None, end=None):  # type: ignore[no-untyped-def]
        self.seen("get", key)
        return self.inner.get(key, start, end)

    def get_with_token(self, key):  # type: ignore[no-untyped-def]
        self.seen("get_with_token", key)
        return self.inner.get_with_token(key)

    def put(self, key, data, *, sync=True):  # type: ignore[no-untyped-def]
        self.seen("put", key)
        return self.inner.put(key, data, sync=sync)

    def put_if_absent(self, key, data, *, sync=True):  # type: ignore[no-untyped-def]
        self.seen("put_if_absent", key)
        return self.inner.put_if_absent(key, data, sync=sync)

    def list(self, prefix):  # type: ignore[no-untyped-def]
        self.seen("list", prefix)
        return self.inner.list(prefix)


def _three_versions(tmp_path: Path, n: int = 3, ref: str | None = "current") -> Repository:
    local = Repository(str(tmp_path / "store"))
    for i in range(n):
        f = series.save(tmp_path / f"v{i}" / "m.safetensors", series.tensors(n=1, seed=i))
        local.commit("m", [f], ref=ref)
    return local


def test_a_ref_move_on_a_remote_store_asks_two_things_at_once(tmp_path: Path):
    """On a remote store a ref move reads GC's expiry marker and the ref together, and after
    the swap writes the reflog entry while it reads the marker again: two round trips fewer
    per move (a rollback on S3 waits ~13, not ~15). Each pair meets at a barrier here, which
    calls made one after the other would break."""
    import threading

    barrier = threading.Barrier(2, timeout=20)
    met: list[str] = []
    kinds = {("get", "/expired/"): "marker", ("get_with_token", "/refs/"): "ref",
             ("put_if_absent", "/reflog/"): "reflog"}

    def seen(op: str, key: str) -> None:
        for (o, part), what in kinds.items():
            if o == op and part in key:
                met.append(what)
                barrier.wait()

    local = _three_versions(tmp_path, 2, ref=None)
    remote = Repository(_Watched(tmp_path / "store", seen))
    value = RefValue.of(remote.get_version("m", "1.0.0").target)
    remote.refs.move("m", "canary", value, expected_seq=None, reason="first canary")
    assert sorted(met) == ["marker", "marker", "ref", "reflog"]
    assert local.refs.get("m", "canary") == value


def test_a_rollback_on_a_remote_store_asks_for_the_version_and_the_ref_at_once(tmp_path: Path):
    """Before it moves anything, a rollback (``set_ref``) on a remote store asks for the
    target's index entry, the model's catalog (its tags) and the ref in one round trip, and
    does not read the index entry again before the move (the move reads GC's marker, which
    is what guards against an expiry meanwhile): a rollback one 20 ms round trip away waits
    ~11 round trips, not ~14. The three first reads meet at a barrier here, which reads made
    one after the other would break."""
    import threading
    from collections import Counter

    barrier = threading.Barrier(3, timeout=20)
    first: set[str] = set()
    reads: Counter[str] = Counter()
    lock = threading.Lock()

    def seen(op: str, key: str) -> None:
        if op == "get":
            reads[key] += 1
        what = ("index entry" if op == "get" and "/versions/" in key
                else "ref" if op == "get_with_token" and "/refs/" in key
                else "catalog" if op == "get_with_token" and key.startswith("catalog/heads/")
                else None)
        if what is None:
            return
        with lock:
            new = what not in first
            first.add(what)
        if new:
            barrier.wait()

    local = _three_versions(tmp_path)
    res = Repository(_Watched(tmp_path / "store", seen)).rollback("m", to="1.0.0")
    assert res.ok and local.resolve("m").version == "1.0.0"
    assert first == {"index entry", "ref", "catalog"}
    assert reads["models/m/versions/1.0.0"] == 1
    # a version that is not there is still refused, the ref untouched
    with pytest.raises(NotFoundError, match="no version"):
        Repository(_Watched(tmp_path / "store", lambda op, key: None)).rollback("m", to="1.0.9")
    assert local.resolve("m").version == "1.0.0"


def test_a_remote_ref_move_copies_the_record_it_read_while_it_reads_the_ref_again(
        tmp_path: Path):
    """A record's reflog entry must be stored before the record is replaced (a mover killed
    after its swap left it only in the record). A rollback on a remote store read the ref
    already: that record's entry is copied while the move reads the marker and the ref
    again (one round trip fewer), and never twice. A chain whose last entry was lost comes
    out whole."""
    import threading
    from collections import Counter

    from casstore.repo.keys import reflog_key

    barrier = threading.Barrier(3, timeout=20)
    meeting = {"on": False}
    puts: Counter[str] = Counter()

    def seen(op: str, key: str) -> None:
        if op == "put" and key.startswith("sessions/"):  # the move's session: three meet
            meeting["on"] = True
        if op == "put_if_absent" and "/reflog/" in key:
            puts[key] += 1
        if meeting["on"] and (("/expired/" in key and op == "get") or "/reflog/" in key
                              or ("/refs/" in key and op == "get_with_token")):
            barrier.wait()
            if "/reflog/" in key:
                meeting["on"] = False  # after the first wave, one call at a time

    local = _three_versions(tmp_path)
    last = max(e.seq for e in local.refs.reflog("m", "current"))
    local.store.delete(reflog_key("m", "current", last))  # its mover was killed after the swap
    res = Repository(_Watched(tmp_path / "store", seen)).rollback("m", to="1.0.0")
    assert res.ok and local.resolve("m").version == "1.0.0"
    assert puts[reflog_key("m", "current", last)] == 1  # copied once, with the reads
    log = sorted(local.refs.reflog("m", "current"), key=lambda e: e.seq)
    assert [e.seq for e in log] == list(range(last + 2))  # the lost entry is back
    assert log[-1].new == local.refs.read("m", "current")[0].value


def test_a_remote_ref_move_checks_the_trust_policy_with_its_first_reads(tmp_path: Path):
    """The trust policy is read (and the versions' signatures checked) under the move's
    session while GC's marker and the ref are read: one round trip, not two. A version the
    policy refuses is still refused, the ref untouched; once signed, it moves."""
    import threading

    from casstore.ops.trust import make_rule
    from tests.keys import key_pair

    admin, admin_pub = key_pair(tmp_path / "keys", "admin")
    local = _three_versions(tmp_path)
    local.set_trust_policy([("admin", admin_pub.read_bytes())], [make_rule("current")],
                           admin.read_bytes(), force_init=True)
    barrier = threading.Barrier(2, timeout=20)  # cyclic: once per rollback
    first_marker = {"read": False}
    met: list[str] = []

    def seen(op: str, key: str) -> None:
        if (op, key) == ("list", "trust/"):
            met.append("trust")
            barrier.wait()
        elif (op, key) == ("get", "models/m/expired/1.0.1") and not first_marker["read"]:
            first_marker["read"] = True  # the read after the swap goes alone
            met.append("marker")
            barrier.wait()

    res = Repository(_Watched(tmp_path / "store", seen)).rollback("m", to="1.0.1")
    assert not res.ok and "signature" in res.message
    assert local.resolve("m").version == "1.0.2"
    local.sign("m", "1.0.1", admin.read_bytes())
    first_marker["read"] = False
    res = Repository(_Watched(tmp_path / "store", seen)).rollback("m", to="1.0.1")
    assert res.ok and local.resolve("m").version == "1.0.1"
    assert sorted(met) == ["marker", "marker", "trust", "trust"]
