"""push / pull / replicate and rollback across buckets, against moto's S3 over HTTP."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from casstore import AlreadyExistsError, Repository
from casstore.ops.transfer import rollback_across, select_versions, transfer
from casstore.ops.verify import verify
from casstore.store import RetryingStore, open_store
from casstore.testing.stores import CountingStore, FaultInjectingStore
from tests import series
from tests.cli_helpers import run

pytestmark = pytest.mark.s3


@pytest.fixture
def local(tmp_path: Path) -> Repository:
    repo = Repository(str(tmp_path / "local"))
    base = series.tensors(n=9, size=256 << 10)
    tuned = series.finetune(base)
    repo.commit("m", [series.save(tmp_path / "a" / "w.safetensors", base)], tags=["stable"])
    repo.commit("m", [series.save(tmp_path / "b" / "w.safetensors", tuned)])
    return repo


@pytest.mark.every_backend
def test_push_everything_then_nothing(local: Repository, remote_url: str, tmp_path: Path):
    remote = Repository(remote_url)
    everything = select_versions(local.ctx, "m", None, True)
    r1 = local.push(remote, everything, refs=["current"])
    assert r1.chunks_sent > 0 and r1.refs_moved == ["m@current"]
    assert [v.version for v in remote.history("m")] == ["1.0.0", "1.0.1"]
    assert remote.get_version("m", "1.0.0").tags == ("stable",)
    r2 = local.push(remote, everything, refs=["current"])
    assert r2.chunks_sent == 0 and r2.bytes_sent == 0  # resumable and idempotent
    remote.checkout("m", "1.0.1", tmp_path / "out")
    assert (tmp_path / "out" / "w.safetensors").read_bytes() == \
        (tmp_path / "b" / "w.safetensors").read_bytes()
    assert verify(remote.ctx, read_data=True).ok


@pytest.mark.every_backend
def test_push_finetune_sends_only_changed_tensors(local: Repository, remote_url: str):
    counting = CountingStore(open_store(remote_url))
    remote = Repository(counting)
    transfer(local.ctx, remote.ctx, [local.get_version("m", "1.0.0")])
    counting.reset()
    v = local.get_version("m", "1.0.1")
    c = local.compare("m", "1.0.0", "1.0.1")
    changed = sum(t.length for t in v.manifest.files[0].tensors
                  if t.name in c.files[0].tensors.changed)
    report = transfer(local.ctx, remote.ctx, [v], refs=["current"])
    assert report.versions == ["m@1.0.1"]
    sent = counting.bytes_written
    assert changed <= sent <= 1.05 * changed, (sent, changed)


def test_push_with_faults_completes(local: Repository, s3_url: str):
    flaky = FaultInjectingStore(open_store(s3_url, retry=False), seed=5, fail_rate=0.15,
                                lost_response_rate=0.1)
    remote = Repository(RetryingStore(flaky, base_delay=0.001, attempts=12))
    transfer(local.ctx, remote.ctx, local.versions("m"), refs=["current"])
    assert sum(flaky.injected.values()) > 5
    flaky.active = False
    assert verify(remote.ctx, read_data=True).ok
    assert remote.resolve("m").version == "1.0.0"


def test_conflicting_version_refused(local: Repository, s3_url: str, tmp_path: Path):
    remote = Repository(s3_url)
    remote.commit("m", [series.save(tmp_path / "x.safetensors", series.tensors(n=1, seed=9))])
    with pytest.raises(AlreadyExistsError, match="different content"):
        transfer(local.ctx, remote.ctx, [local.get_version("m", "1.0.0")])


@pytest.mark.slow
def test_push_killed_midway_then_rerun(tmp_path: Path, s3_url: str):
    src = tmp_path / "src"
    big = tmp_path / "big"
    for i in range(3):
        series.save(big / f"part{i}.safetensors", series.tensors(n=8, size=2 << 20, seed=40 + i))
    assert run("commit", "m", big, store=src).code == 0
    rng = random.Random(11)
    for _ in range(3):
        p = subprocess.Popen([sys.executable, "-m", "casstore", "--store", str(src), "push",
                              s3_url, "m", "--ref", "current"], env=dict(os.environ),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.5))
        p.send_signal(signal.SIGKILL)
        p.wait()
    r = run("push", s3_url, "m", "--ref", "current", "--json", store=src)
    assert r.code == 0, r.err
    remote = Repository(s3_url)
    assert remote.resolve("m").version == "1.0.0"
    assert verify(remote.ctx, read_data=True).ok
    remote.checkout("m", "@current", tmp_path / "out")
    for f in big.iterdir():
        assert (tmp_path / "out" / f.name).read_bytes() == f.read_bytes()


def test_pull_and_replicate_cli(local: Repository, s3_url: str, tmp_path: Path):
    store = local.store.url
    assert run("push", s3_url, "m", "--all", "--ref", "current", store=store).code == 0
    mirror = tmp_path / "mirror"
    r = run("pull", s3_url, "m", "@current", "--json", store=mirror)
    assert r.code == 0, r.err
    assert r.json()["refs_moved"] == ["m@current"]
    other = tmp_path / "other"
    r = run("replicate", str(s3_url), str(other), "--json")
    assert r.code == 0, r.err
    assert [v.version for v in Repository(str(other)).history("m")] == ["1.0.0", "1.0.1"]


def test_rollback_across_buckets(local: Repository, s3_url: str, tmp_path: Path):
    second = Repository(str(tmp_path / "region2"))
    remote = Repository(s3_url)
    for dst in (remote, second):
        transfer(local.ctx, dst.ctx, local.versions("m"), refs=["current"])
    for r in (local, remote, second):
        r.promote("m", "1.0.1")
    outcomes = remote.rollback_across([second, local], "m", to=None, reason="bad canary")
    assert all(o.ok for o in outcomes), outcomes
    assert {r.resolve("m").version for r in (local, remote, second)} == {"1.0.0"}
    # a bucket lacking the target: nothing moves anywhere, the failure is named
    for r in (local, remote, second):
        r.promote("m", "1.0.1")
    v = second.get_version("m", "1.0.0")
    from casstore.repo.keys import chunk_key

    second.store.delete(chunk_key(v.manifest.files[0].object_digests()[0]))
    outcomes = rollback_across([remote.rollout, second.rollout], "m", to="1.0.0", verify=True)
    assert not any(o.ok for o in outcomes)
    assert "missing" in outcomes[1].message
    assert {r.resolve("m").version for r in (remote, second)} == {"1.0.1"}
    r = run("rollback", "m", "--to", "1.0.0", "--replica", s3_url, "--json", store=local.store.url)
    assert r.code == 0, r.err
    assert [s["ok"] for s in r.json()["stores"]] == [True, True]
    assert remote.resolve("m").version == "1.0.0"


def test_rollback_across_checks_and_switches_the_buckets_at_once(local: Repository,
                                                                 tmp_path: Path):
    """Each bucket's ref is read for the check and swapped for the switch while the others'
    are: a rollback across N buckets waits for the slowest, not for their sum. Each store
    here stops its ref compare-and-swap at a barrier the other must reach too (sequential
    switches would break it: the first waits alone, then fails)."""
    Meeting = _meeting_at_ref_swaps(2)
    stores = []
    for name in ("a", "b"):
        r = Repository(str(tmp_path / name))
        transfer(local.ctx, r.ctx, local.versions("m"), refs=["current"])
        r.promote("m", "1.0.1")
        stores.append(Repository(Meeting(r.store)))
    outcomes = rollback_across([s.rollout for s in stores], "m", to="1.0.0")
    assert [o.ok for o in outcomes] == [True, True], outcomes
    assert [s.resolve("m").version for s in stores] == ["1.0.0", "1.0.0"]


def test_two_pushes_of_one_ref_both_succeed(local: Repository, tmp_path: Path):
    """Two CI jobs push the same versions and ``current`` into one store at once: both read
    the ref absent, one swap wins, and the other, refused, finds the ref already where it
    meant to put it: success, not a conflict. (A ref moved elsewhere meanwhile still
    refuses the push: the other move stands.) Each job's ref swap waits at a barrier for the
    other's, so both have read the ref before either writes it."""
    Meeting = _meeting_at_ref_swaps(2)
    Repository(str(tmp_path / "dst")).init()
    errors: list[BaseException] = []
    reports = []

    def push() -> None:
        try:
            dst = Repository(Meeting(open_store(str(tmp_path / "dst"))))
            reports.append(transfer(local.ctx, dst.ctx, local.versions("m"), refs=["current"]))
        except BaseException as e:  # reported below
            errors.append(e)

    jobs = [threading.Thread(target=push) for _ in range(2)]
    for j in jobs:
        j.start()
    for j in jobs:
        j.join()
    assert not errors, errors
    assert sorted(len(r.refs_moved) for r in reports) == [0, 1]  # one of them moved it
    dst = Repository(str(tmp_path / "dst"))
    assert dst.resolve("m").version == local.resolve("m").version
    assert [v.version for v in dst.versions("m")] == ["1.0.0", "1.0.1"]
    assert verify(dst.ctx, read_data=True).ok


def _meeting_at_ref_swaps(parties: int) -> type:
    """A store wrapper whose ref compare-and-swaps wait at one barrier of ``parties``: each
    proceeds only once all have reached their swap (sequential ones break the barrier)."""
    from casstore.store.wrappers import WrappingStore

    barrier = threading.Barrier(parties, timeout=20)

    class Meeting(WrappingStore):
        def replace_if_match(self, key: str, data: bytes, token: str | None) -> str:
            if "/refs/" in key:
                barrier.wait()
            return self.inner.replace_if_match(key, data, token)

    return Meeting


def test_a_number_taken_meanwhile_is_refused_after_the_rest_are_published(
        local: Repository, tmp_path: Path):
    """A version indexed at the destination by another writer between the transfer's look
    and its index entry (here: the look is made blind to index entries): that one version is
    refused with a clear error, the others of the batch are published, the destination keeps
    its own version under that number, and no reservation is left behind in its catalog."""
    from casstore.store.wrappers import WrappingStore

    class Blind(WrappingStore):
        def exists_many(self, keys):  # type: ignore[no-untyped-def]
            return {k for k in self.inner.exists_many(keys) if "/versions/" not in k}

    dst = Repository(str(tmp_path / "dst"))
    theirs = dst.commit("m", [series.save(tmp_path / "x.safetensors",
                                          series.tensors(n=1, seed=9))]).version
    blind = Repository(Blind(open_store(str(tmp_path / "dst"))))
    with pytest.raises(AlreadyExistsError, match=r"m@1\.0\.0 was created .* meanwhile"):
        transfer(local.ctx, blind.ctx, local.versions("m"))
    dst = Repository(str(tmp_path / "dst"))
    assert dst.get_version("m", "1.0.0").id == theirs.id
    assert dst.get_version("m", "1.0.1").id == local.get_version("m", "1.0.1").id
    assert [v.version for v in dst.versions("m")] == ["1.0.0", "1.0.1"]
    assert not dst.catalog.models_catalog.head("m").pending
    assert verify(dst.ctx, read_data=True).ok


def test_numbers_the_source_used_stay_unused_at_the_destination(tmp_path: Path):
    """A version removed at the source (its number never reused there) is not pushed, yet
    its number is not given out at the destination either: the push raises the
    destination's high-water mark, in the swap that finalizes its versions, or on its own
    when every version was there already."""
    src = Repository(str(tmp_path / "src"))
    for i in range(4):
        src.commit("m", [series.save(tmp_path / f"v{i}.safetensors", series.tensors(n=1, seed=i))])
    src.rm("m", "1.0.3")
    for dst_name, first in (("a", None), ("b", ["1.0.0", "1.0.1", "1.0.2"])):
        dst = Repository(str(tmp_path / dst_name))
        if first:  # every version there already: nothing to publish
            transfer(src.ctx, dst.ctx, [src.get_version("m", v) for v in first])
            dst.catalog.models_catalog.update("m", lambda h: setattr(h, "high", "1.0.2"))
        transfer(src.ctx, dst.ctx, src.versions("m"))
        res = dst.commit("m", [series.save(tmp_path / "new.safetensors",
                                           series.tensors(n=1, seed=99))])
        assert res.version.version == "1.0.4"
