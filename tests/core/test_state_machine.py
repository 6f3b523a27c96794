"""A Hypothesis state machine over commit / tag / move ref / rollback / split / gc / rm / verify.

Invariants: everything reachable from a ref or a retained version exists and hashes
correctly, and reads back byte-identical to what was committed; counted ``stats`` equal a scan
after every GC, and in between differ from it at most by the chunks they say are uncertain.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import uuid
from pathlib import Path

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from casstore import InvalidInputError, Repository
from casstore.ops.gc import GarbageCollector
from casstore.ops.retention import RetentionPolicy
from casstore.ops.verify import verify
from casstore.store import open_store
from tests import series

_HOW = ("exact", "counted_at", "approximate")  # how stats were counted, not what


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="casstore-sm-"))
        self.repo = Repository(open_store(f"memory://sm-{uuid.uuid4().hex}"))
        self.pool = [series.tensors(n=4, size=2048, seed=s) for s in range(3)]
        self.content: dict[tuple[str, str], bytes] = {}  # (model, semver) -> file bytes
        self.n = 0

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def versions(self, model: str) -> list[str]:
        try:
            return [v.version for v in self.repo.history(model)]
        except FileNotFoundError:
            return []

    @rule(
        model=st.sampled_from(["a", "b"]),
        base=st.integers(0, 2),
        mix=st.integers(0, 3),
        vtype=st.sampled_from(["release", "beta"]),
        ref=st.sampled_from([None, "prod"]),
    )
    def commit(self, model: str, base: int, mix: int, vtype: str, ref: str | None) -> None:
        t = (
            series.finetune(self.pool[base], fraction=mix / 4, seed=self.n)
            if mix
            else self.pool[base]
        )
        self.n += 1
        f = series.save(self.tmp / f"{self.n}" / "w.safetensors", t)
        res = self.repo.commit(model, [f], version_type=vtype, ref=ref)
        self.content[(model, res.version.version)] = f.read_bytes()

    @rule(
        model=st.sampled_from(["a", "b"]),
        pick=st.integers(0, 50),
        tag=st.sampled_from(["stable", "keep"]),
    )
    def tag(self, model: str, pick: int, tag: str) -> None:
        vs = self.versions(model)
        if vs:
            self.repo.tag(model, vs[pick % len(vs)], tag)

    @rule(
        model=st.sampled_from(["a", "b"]),
        pick=st.integers(0, 50),
        ref=st.sampled_from(["current", "prod", "canary"]),
    )
    def move_ref(self, model: str, pick: int, ref: str) -> None:
        vs = self.versions(model)
        if vs:
            assert self.repo.promote(model, vs[pick % len(vs)], ref=ref).ok

    @rule(model=st.sampled_from(["a", "b"]))
    def quick_rollback(self, model: str) -> None:
        try:
            self.repo.rollback(model)
        except FileNotFoundError:
            pass  # no earlier stable version, or no current ref yet

    @rule(model=st.sampled_from(["a", "b"]), pick=st.integers(0, 50))
    def split(self, model: str, pick: int) -> None:
        vs = self.versions(model)
        try:
            cur = self.repo.refs.get(model, "current")
        except FileNotFoundError:
            return
        if cur.target is None:
            self.repo.advance(model)
            return
        target = vs[pick % len(vs)]
        if target != cur.target.version:
            self.repo.start_split(model, target, steps=(0.5, 1.0))

    @rule(keep_last=st.integers(0, 3), reflog=st.sampled_from([0, 3600]), keep_tag=st.booleans())
    def gc(self, keep_last: int, reflog: int, keep_tag: bool) -> None:
        policy = RetentionPolicy(
            keep_last=keep_last, keep_reflog_seconds=reflog, keep_tags=("keep",) if keep_tag else ()
        )
        GarbageCollector(self.repo.ctx, grace_seconds=0).collect(policy)
        counted, exact = self.repo.stats().to_dict(), self.repo.stats(exact=True).to_dict()
        assert counted["approximate"] == []  # a sweep counts exactly
        assert {k: v for k, v in counted.items() if k not in _HOW} == \
            {k: v for k, v in exact.items() if k not in _HOW}

    @rule(model=st.sampled_from(["a", "b"]), pick=st.integers(0, 50))
    def rm(self, model: str, pick: int) -> None:
        vs = self.versions(model)
        if not vs:
            return
        try:
            self.repo.rm(model, vs[pick % len(vs)])
        except InvalidInputError:
            return  # a ref points at it
        self.content.pop((model, vs[pick % len(vs)]))
        assert self.repo.stats().to_dict()["approximate"] == []  # rm counts exactly

    @precondition(lambda self: self.n > 0)
    @invariant()
    def stats_agree_with_a_scan_within_what_they_say(self) -> None:
        counted, exact = self.repo.stats().to_dict(), self.repo.stats(exact=True).to_dict()
        said = [c for c in counted["approximate"] if c["kind"] == "found"]
        assert len(said) == len(counted["approximate"])  # nothing else can be off here
        n, size = sum(c["chunks"] for c in said), sum(c["bytes"] for c in said)
        for k in ("versions", "logical_bytes", "chunks", "stored_bytes"):
            assert counted[k] == exact[k], k  # objects and bytes in the store: always exact
        assert abs(counted["used_chunks"] - exact["used_chunks"]) <= n
        assert abs(counted["unique_bytes"] - exact["unique_bytes"]) <= size
        assert counted["per_model"].keys() == exact["per_model"].keys()
        for m, row in counted["per_model"].items():
            assert abs(row["chunks"] - exact["per_model"][m]["chunks"]) <= n, m
            assert abs(row["unique_bytes"] - exact["per_model"][m]["unique_bytes"]) <= size, m

    @precondition(lambda self: self.n > 0)
    @invariant()
    def everything_reachable_reads_back(self) -> None:
        assert verify(self.repo.ctx, read_data=True).ok
        for model in ("a", "b"):
            for v in self.versions(model):
                data = self.repo.open_file(model, v, "w.safetensors").read()
                assert data == self.content[(model, v)]
            try:
                refs = self.repo.refs.list(model)
            except FileNotFoundError:
                refs = {}
            for name, rec in refs.items():
                for t in rec.value.versions():
                    assert t.version in self.versions(model), f"{model}@{name} dangles"
                key = f"k{random.random()}"
                self.repo.get_version(model, f"@{name}", request_key=key)


StoreMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStoreMachine = StoreMachine.TestCase
