"""The torture suite (issue 18): kill, fault, race, fuzz, fill and freeze casstore, then check
that nothing was lost. Seeded and reproducible; prints one table.

    python -m benchmarks.torture --trials 300            # the full run (~20-30 min here)
    python -m benchmarks.torture --trials 16 --fuzz 400  # the short run (part of pytest)

Rows are operation x store. Columns: trials, kills (SIGKILLs that landed mid-operation),
injected faults (S3 faults through :class:`casstore.testing.faultproxy.FaultProxy`), hostile
inputs (fuzz cases and special conditions), then what must all be 0: versions lost, content
mismatches, torn refs, verify failures, defects (a traceback, a crash, or a hostile input over
its bounds: 256 MB more memory, 5 s of CPU); last the slowest clear error in seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KILL_OPS = ("commit", "rollback", "progressive", "tag", "gc", "push", "pull", "catalog")
COLUMNS = ("trials", "kills", "faults", "hostile", "lost", "mismatch", "torn", "verify_fail",
           "defects", "slowest_error_s")
MUST_BE_ZERO = ("lost", "mismatch", "torn", "verify_fail", "defects")


@dataclass
class Row:
    trials: int = 0
    kills: int = 0
    faults: int = 0
    hostile: int = 0
    lost: int = 0
    mismatch: int = 0
    torn: int = 0
    verify_fail: int = 0
    defects: int = 0
    slowest_error_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def error_time(self, seconds: float) -> None:
        self.slowest_error_s = max(self.slowest_error_s, round(seconds, 2))

    def add(self, other: Row) -> None:
        for c in COLUMNS:
            if c == "slowest_error_s":
                self.error_time(other.slowest_error_s)
            else:
                setattr(self, c, getattr(self, c) + getattr(other, c))
        self.notes += other.notes


# -- content the parent knows ------------------------------------------------------------------
def _tensors(seed: int, n: int = 4, size: int = 48 << 10) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {f"layers.{i}.weight": rng.randbytes(size) for i in range(n)}


def _file(folder: Path, seed: int) -> Path:
    from casstore.cli.demo import write_safetensors

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"w{seed}.safetensors"
    write_safetensors(path, _tensors(seed), {})
    return path


def _repo(url: str) -> Any:
    from casstore import LeaseSettings, Repository

    return Repository(url, lease_settings=LeaseSettings(lock_timeout=5.0, wait_timeout=60))


def _baseline(url: str, tmp: Path) -> dict[str, bytes]:
    """Three versions with known bytes (semver -> file bytes), ``current`` and ``prod``."""
    repo = _repo(url)
    out = {}
    for i in range(3):
        f = _file(tmp / "base", 1000 + i)
        res = repo.commit("m", [f], ref="prod", tags=["stable"] if i == 0 else [])
        out[res.version.version] = f.read_bytes()
    return out


# -- what a killed child runs (module level: forkserver children unpickle it by name) --------
def op_loop(url: str, op: str, seed: int, other: str, tmp: str) -> None:  # pragma: no cover
    from casstore.ops.retention import RetentionPolicy

    repo = _repo(url)
    rng = random.Random(seed)
    n = 0
    while True:
        n += 1
        try:
            if op == "commit":
                repo.commit("m", [_file(Path(tmp), seed * 1000 + n)], ref="prod")
            elif op == "rollback":
                vs = [v.version for v in repo.versions("m")]
                repo.rollback("m", to=rng.choice(vs), ref="prod")
            elif op == "progressive":
                vs = [v.version for v in repo.versions("m")]
                with contextlib.suppress(Exception):
                    repo.abort("m", ref="prod")
                repo.start_split("m", rng.choice(vs), ref="prod", steps=(0.1, 0.5, 1.0))
                repo.advance("m", ref="prod")
                repo.advance("m", ref="prod")
            elif op == "tag":
                vs = [v.version for v in repo.versions("m")]
                v = rng.choice(vs)
                repo.tag("m", v, f"t{n % 3}")
                with contextlib.suppress(Exception):
                    repo.untag("m", v, f"t{(n + 1) % 3}")
            elif op == "gc":
                repo.commit("m", [_file(Path(tmp), seed * 1000 + n)])
                repo.gc(RetentionPolicy(keep_last=4, keep_tags=("stable",),
                                        keep_reflog_seconds=0), grace_seconds=0)
            elif op == "push":
                repo.push(_repo(other), repo.versions("m"), refs=["prod"])
            elif op == "pull":
                src = _repo(other)
                src.push(repo, src.versions("m"), refs=["prod"])
            elif op == "catalog":
                from casstore.ops.retention import save_policy

                save_policy(repo.store, "m", RetentionPolicy(keep_last=3 + n % 5))
                vs = [v.version for v in repo.versions("m")]
                repo.tag("m", rng.choice(vs), "catalog")
        except Exception as e:  # a clean refusal is fine; the parent checks state
            from casstore.errors import CasstoreError

            if not isinstance(e, CasstoreError):
                raise


# -- invariants -----------------------------------------------------------------------------
def check_store(url: str, baseline: dict[str, bytes], row: Row, *, gc_may_expire: bool) -> None:
    """Versions lost, content mismatches, torn refs and verify failures of one store."""
    from casstore.ops.verify import verify
    from casstore.repo.keys import expired_key

    repo = _repo(url)
    try:
        listed = {v.version: v for v in repo.versions("m")}
        for semver, data in baseline.items():
            if semver not in listed:
                if gc_may_expire and repo.store.exists(expired_key("m", semver)):
                    continue
                row.lost += 1
                row.notes.append(f"{url}: lost {semver}")
                continue
            v = listed[semver]
            got = repo.open_file("m", semver, v.manifest.files[0].path).read()
            if got != data:
                row.mismatch += 1
                row.notes.append(f"{url}: {semver} reads different bytes")
        for semver, v in listed.items():  # every listed version reads back whole
            for f in v.manifest.files:
                if len(repo.open_file("m", semver, f.path).read()) != f.size:
                    row.mismatch += 1
        for name, rec in repo.refs.list("m").items():
            for t in rec.value.versions():
                if t.version not in listed or listed[t.version].id.hex() != t.manifest:
                    row.torn += 1
                    row.notes.append(f"{url}: ref {name} -> {t.version} not stored")
        report = verify(repo.ctx, read_data=True)
        if not report.ok:
            row.verify_fail += 1
            row.notes.append(f"{url}: verify: {report.problems[0].to_dict()}")
    except Exception as e:  # any failure to read is a finding
        row.verify_fail += 1
        row.notes.append(f"{url}: check failed: {type(e).__name__}: {e}")


# -- sections -------------------------------------------------------------------------------
def kill_trials(stores: dict[str, Callable[[str], str]], trials: int, seed: int,
                tmp: Path) -> dict[tuple[str, str], Row]:
    """SIGKILL a child at a random moment of each operation, then check the store."""
    from casstore.testing.children import child

    rng = random.Random(seed)
    rows: dict[tuple[str, str], Row] = {}
    per = max(1, trials // (len(KILL_OPS) * len(stores)))
    for kind, make in stores.items():
        for op in KILL_OPS:
            row = rows.setdefault((f"kill {op}", kind), Row())
            url, other = make(f"{op}-a"), make(f"{op}-b")
            work = tmp / f"{kind}-{op}"
            baseline = _baseline(url, work)
            if op in ("push", "pull"):
                _baseline(other, work / "other")
            for t in range(per):
                p = child(op_loop, url, op, seed * 100 + t, other, str(work / "files"))
                p.start()
                time.sleep(rng.uniform(0.05, 1.5))
                row.trials += 1
                if p.is_alive():
                    row.kills += 1
                    os.kill(p.pid, signal.SIGKILL)
                p.join(30)
                if p.exitcode not in (0, -signal.SIGKILL):
                    row.defects += 1
                    row.notes.append(f"{op}/{kind}: child exited {p.exitcode}")
                check_store(url, baseline, row, gc_may_expire=op == "gc")
                if op in ("push", "pull"):
                    check_store(other, {}, row, gc_may_expire=False)
    return rows


def fault_trials(endpoint: str, trials: int, seed: int, tmp: Path) -> dict[tuple[str, str], Row]:
    """Commit, push, pull, rollback and GC through a proxy that refuses, resets, delays,
    truncates and duplicates S3 requests; every outcome is success or a clear error."""
    from casstore import Repository
    from casstore.errors import CasstoreError
    from casstore.ops.retention import RetentionPolicy
    from casstore.testing.faultproxy import FaultProxy

    rows: dict[tuple[str, str], Row] = {}
    rng = random.Random(seed)
    with FaultProxy(endpoint, rate=0.15, seed=seed, slow_seconds=1.0) as px:
        prefix = f"s3://casstore-test/faults-{seed}"
        local = Repository(str(tmp / "faults-local"))
        baseline = _baseline(prefix, tmp / "faults")
        local_base = _baseline(str(tmp / "faults-local"), tmp / "faults-l")
        ops = ("commit", "push", "pull", "rollback", "gc")
        for t in range(trials):
            op = ops[t % len(ops)]
            row = rows.setdefault((f"faults {op}", "s3+proxy"), Row())
            before = sum(px.counts.values())
            via = Repository(prefix, endpoint_url=px.url)
            t0 = time.monotonic()
            try:
                if op == "commit":
                    via.commit("m", [_file(tmp / "ff", 5000 + t)], ref="prod")
                elif op == "push":
                    local.push(via, local.versions("m")[-1:], refs=["prod"])
                elif op == "pull":
                    via.push(local, via.versions("m")[-2:], refs=[])
                elif op == "rollback":
                    vs = [v.version for v in via.versions("m")]
                    via.rollback("m", to=rng.choice(vs), ref="prod")
                else:
                    via.gc(RetentionPolicy(keep_last=6, keep_reflog_seconds=0), grace_seconds=0)
            except CasstoreError:
                row.error_time(time.monotonic() - t0)
            except Exception as e:  # a traceback reaching a user is a defect
                row.defects += 1
                row.notes.append(f"faults {op}: {type(e).__name__}: {e}")
            row.trials += 1
            row.faults += sum(px.counts.values()) - before
            if t % 5 == 4:
                check_store(prefix, baseline, row, gc_may_expire=True)
        px.enabled = False  # a client that has read everything and holds pooled connections
        seen = Repository(prefix, endpoint_url=px.url)
        seen.versions("m")
        seen.refs.get("m", "prod")
        seen.log("m")
        px.enabled = True
        reads: dict[str, Callable[[], object]] = {
            "new Repository": lambda: Repository(prefix, endpoint_url=px.url).versions("m"),
            "versions": lambda: seen.versions("m"),
            "refs.get": lambda: seen.refs.get("m", "prod"),
            "show @prod": lambda: seen.get_version("m", "@prod"),
            "log": lambda: seen.log("m"),
        }
        with px.outage():  # nothing answers, pooled connections neither: a clear error, quickly
            row = rows.setdefault(("faults outage", "s3+proxy"), Row())
            for name, read in reads.items():
                t0 = time.monotonic()
                try:
                    read()
                    row.defects += 1
                    row.notes.append(f"faults outage: {name} answered during the outage")
                except CasstoreError:
                    row.error_time(time.monotonic() - t0)
                except Exception as e:
                    row.defects += 1
                    row.notes.append(f"faults outage {name}: {type(e).__name__}: {e}")
                row.trials += 1
            row.faults += 1
        check_store(prefix, baseline, rows[("faults commit", "s3+proxy")], gc_may_expire=True)
        check_store(str(tmp / "faults-local"), local_base, rows[("faults pull", "s3+proxy")],
                    gc_may_expire=False)
    return rows


def race_trials(stores: dict[str, Callable[[str], str]], seconds: float, seed: int,
                tmp: Path, rounds: int = 1) -> dict[tuple[str, str], Row]:
    """Two committers, a roller, a collector and a tagger on one store at once, all
    SIGKILLed after ``seconds``; ``rounds`` fresh stores of each kind, seeds apart. A race
    finding shows up in a few rounds in a hundred, so the full run races many rounds."""
    from casstore.testing.children import child

    rows = {}
    for kind, make in stores.items():
        row = Row()
        for r in range(rounds):
            url = make("race" if r == 0 else f"race{r}")
            work = tmp / f"race-{kind}-{r}"
            baseline = _baseline(url, work)
            procs = [child(op_loop, url, op, seed + 7919 * r + i, "", str(work / str(i)))
                     for i, op in enumerate(("commit", "commit", "rollback", "gc", "tag"))]
            for p in procs:
                p.start()
            time.sleep(seconds)
            for p in procs:
                row.trials += 1
                if p.is_alive():
                    os.kill(p.pid, signal.SIGKILL)
                    row.kills += 1
                p.join(30)
                if p.exitcode not in (0, -signal.SIGKILL):
                    row.defects += 1
            check_store(url, baseline, row, gc_may_expire=True)
        rows[("race commit x2, rollback, gc, tag", kind)] = row
    return rows


def fuzz_trials(cases: int, seed: int) -> dict[tuple[str, str], Row]:
    """Hypothesis over every decoder of store or user bytes, in a child under the bounds."""
    from casstore.testing.hostile import MEMORY_BOUND, TIME_BOUND, bounded

    rows = {}
    for name in FUZZ_TARGETS:
        out = bounded(fuzz_one, name, max(1, cases // len(FUZZ_TARGETS)), seed,
                      memory=MEMORY_BOUND, seconds=600, wall=1800)
        row = Row()
        if out.kind == "ok":
            stats = json.loads(Path(_fuzz_stats_path(name, seed)).read_text())
            row.trials = row.hostile = stats["cases"]
            row.defects = stats["defects"]
            row.error_time(stats["slowest_s"])
            row.notes += stats["notes"]
            if stats["slowest_s"] > TIME_BOUND:
                row.defects += 1
        else:
            row.defects += 1
            row.notes.append(f"fuzz {name}: {out.kind}: {out.detail[:500]}")
        rows[(f"fuzz {name}", "memory")] = row
    return rows


def _fuzz_stats_path(name: str, seed: int) -> str:
    return os.path.join(tempfile.gettempdir(), f"casstore-fuzz-{name}-{seed}-{os.getuid()}.json")


def fuzz_one(name: str, cases: int, seed: int) -> None:  # pragma: no cover - in a child
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    from casstore.errors import CasstoreError

    sample, decode = FUZZ_TARGETS[name]()
    stats = {"cases": 0, "defects": 0, "slowest_s": 0.0, "notes": []}

    @st.composite
    def mutated(draw: Any) -> bytes:
        data = bytearray(sample)
        for _ in range(draw(st.integers(0, 8))):
            kind = draw(st.sampled_from(("flip", "cut", "insert", "splice")))
            if not data:
                break
            i = draw(st.integers(0, len(data) - 1))
            if kind == "flip":
                data[i] ^= 1 << draw(st.integers(0, 7))
            elif kind == "cut":
                del data[i:]
            elif kind == "insert":
                data[i:i] = draw(st.binary(max_size=16))
            else:
                data[i : i + 8] = draw(st.sampled_from((b"\xff" * 8, b"\x00" * 8,
                                                        (1 << 62).to_bytes(8, "little"))))
        return bytes(data)

    @hseed(seed)
    @settings(max_examples=cases, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(mutated(), st.binary(max_size=512)))
    def run(data: bytes) -> None:
        stats["cases"] += 1
        t0 = time.process_time()
        try:
            decode(data)
        except CasstoreError:
            pass
        except Exception as e:  # anything else is a defect
            stats["defects"] += 1
            if len(stats["notes"]) < 3:
                stats["notes"].append(f"{name}: {type(e).__name__}: {e}"[:300])
        stats["slowest_s"] = max(stats["slowest_s"], time.process_time() - t0)

    run()
    Path(_fuzz_stats_path(name, seed)).write_text(json.dumps(stats))


def _fuzz_manifest() -> tuple[bytes, Callable[[bytes], object]]:
    import datetime as dt

    from casstore.repo.manifest import FileEntry, Manifest, decode, encode

    data = b"x" * 100
    from casstore.digest import Digest

    d = bytes(Digest.of(data))
    m = Manifest(model="m", version="1.0.0", name="m_v1.0.0_x",
                 created_at=dt.datetime.now(dt.timezone.utc), performance_metrics={"a": 1.0},
                 files=(FileEntry(path="w.bin", size=100, chunker="c", chunks=((d, 100),),
                                  inline={d: data}),))
    return encode(m), decode


def _fuzz_ref() -> tuple[bytes, Callable[[bytes], object]]:
    from casstore.repo.refs import RefStore
    from casstore.store.memory import MemoryStore

    store = MemoryStore()
    refs = RefStore(store)
    from casstore.repo.refs import RefValue, Target

    refs.move("m", "prod", RefValue.of(Target(version="1.0.0", manifest="ab" * 32)))
    raw = store.get("models/m/refs/prod")
    return raw, lambda b: RefStore._parse(b, "m", "prod")


def _fuzz_reflog() -> tuple[bytes, Callable[[bytes], object]]:
    from casstore.repo.refs import RefStore

    raw, _ = _fuzz_ref()
    entry = json.dumps(json.loads(raw)["entry"]).encode()
    return entry, lambda b: RefStore._parse_entry(b, "models/m/reflog/prod/000000000000")


def _fuzz_catalog() -> tuple[bytes, Callable[[bytes], object]]:
    from casstore.repo.catalog import parse_index_entry

    raw = json.dumps({"manifest": "ab" * 32, "name": "m_v1.0.0_x"}).encode()
    return raw, lambda b: parse_index_entry("models/m/versions/1.0.0", b)


def _fuzz_chunk() -> tuple[bytes, Callable[[bytes], object]]:
    from casstore.chunking import encodings as E
    from casstore.digest import Digest
    from casstore.errors import CasstoreError
    from casstore.repo.chunks import (
        BaseBuffers,
        BlockBuffers,
        ChunkReader,
        decode_chunk,
        encode_chunk,
    )
    from casstore.repo.keys import chunk_key
    from casstore.store.memory import MemoryStore

    payload = bytes(range(256)) * 64
    d = Digest.of(payload)
    enc = E.encode(memoryview(payload), "F32", E.POLICIES["max"], None)
    raw = encode_chunk(payload, enc)
    store = MemoryStore()
    reader = ChunkReader(store)
    buffers = BlockBuffers(len(payload), BaseBuffers(len(payload), block=4096))

    def decode(b: bytes) -> object:
        """Whole (reads, verify, transfers) and block by block (checkout): both refuse the
        bytes (a CorruptObjectError, raised on) or both give the chunk."""
        store.put(chunk_key(d), b)
        out: list[bytes | CasstoreError] = []
        for read in (lambda: bytes(decode_chunk(b, d, size=len(payload))),
                     lambda: b"".join(bytes(x) for x in reader.read_blocks(d, len(payload),
                                                                           buffers))):
            try:
                out.append(read())
            except CasstoreError as e:
                out.append(e)
        whole, blocks = out
        if isinstance(whole, CasstoreError) and isinstance(blocks, CasstoreError):
            raise whole
        if whole != payload or blocks != payload:
            raise AssertionError(f"whole read {whole!r:.80} vs block read {blocks!r:.80}")
        return whole

    return raw, decode


def _fuzz_safetensors() -> tuple[bytes, Callable[[bytes], object]]:
    import io

    from casstore.chunking import detect_layout
    from casstore.cli.demo import write_safetensors

    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "a.safetensors"
        write_safetensors(p, _tensors(1, n=3, size=256), {"k": "v"})
        raw = p.read_bytes()
    del io

    def decode(b: bytes) -> object:
        v = memoryview(b)
        return detect_layout(lambda o, n: bytes(v[o : o + n]), len(b), "a.safetensors")

    return raw, decode


def _fuzz_torch() -> tuple[bytes, Callable[[bytes], object]]:
    import pickle

    from casstore.chunking import detect_layout
    from casstore.testing.hostile import torch_zip

    raw = torch_zip(pickle.dumps({"a": [1, 2, (3, 4)], "b": {"c": 1.5}}, protocol=2))

    def decode(b: bytes) -> object:
        v = memoryview(b)
        return detect_layout(lambda o, n: bytes(v[o : o + n]), len(b), "a.pt")

    return raw, decode


def _fuzz_pickle() -> tuple[bytes, Callable[[bytes], object]]:
    import pickle

    from casstore.chunking import check_pickle_safe

    raw = pickle.dumps({"a": [1, 2, (3, 4)], "b": {"c": 1.5}, "d": b"xyz"}, protocol=4)
    return raw, check_pickle_safe


def _fuzz_config() -> tuple[bytes, Callable[[bytes], object]]:
    from casstore.repo.config import StoreConfig, load_config
    from casstore.store.memory import MemoryStore

    raw = json.dumps(StoreConfig().to_builtins()).encode()

    def decode(b: bytes) -> object:
        s = MemoryStore()
        s.put("config", b)
        return load_config(s)

    return raw, decode


FUZZ_TARGETS: dict[str, Callable[[], tuple[bytes, Callable[[bytes], object]]]] = {
    "manifest": _fuzz_manifest, "ref": _fuzz_ref, "reflog": _fuzz_reflog,
    "catalog-index": _fuzz_catalog, "chunk+encodings": _fuzz_chunk,
    "safetensors": _fuzz_safetensors, "torch-zip": _fuzz_torch, "pickle": _fuzz_pickle,
    "config": _fuzz_config,
}


@contextlib.contextmanager
def tmpfs(size: str, tmp: Path) -> Iterator[Path | None]:
    """A small tmpfs (root only); None where mount is refused."""
    d = tmp / f"tmpfs-{size}"
    d.mkdir(parents=True, exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)],
                        capture_output=True).returncode == 0
    try:
        yield d if ok else None
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(d)], capture_output=True)


def disk_full_and_read_only(tmp: Path) -> dict[tuple[str, str], Row]:
    """A store on a 20 MB tmpfs filled up, then the same store mounted read-only."""
    from casstore.errors import CasstoreError
    from casstore.ops.retention import RetentionPolicy

    rows: dict[tuple[str, str], Row] = {}
    full, ro = Row(), Row()
    with tmpfs("20m", tmp) as d:
        if d is None:
            full.notes.append("mount refused: disk-full section skipped")
            ro.notes.append("mount refused: read-only section skipped")
            return {("disk full", "tmpfs 20m"): full, ("read-only", "tmpfs ro"): ro}
        url = str(d / "store")
        baseline = _baseline(url, tmp / "full")
        _repo(url).gc(RetentionPolicy(keep_last=10), grace_seconds=0)  # a routine GC before
        big = tmp / "big"
        big.mkdir(exist_ok=True)
        from casstore.cli.demo import write_safetensors

        write_safetensors(big / "big.safetensors",
                          {f"t{i}": os.urandom(4 << 20) for i in range(8)}, {})
        for what in ("commit", "gc"):
            full.trials += 1
            full.hostile += 1
            t0 = time.monotonic()
            try:
                if what == "commit":
                    _repo(url).commit("m", [big / "big.safetensors"], ref="prod")
                    full.notes.append("a 32 MB commit fit on a 20 MB disk?")
                else:
                    filler = d / "filler"
                    with contextlib.suppress(OSError), open(filler, "wb") as f:
                        while True:
                            f.write(b"\0" * (1 << 20))
                    _repo(url).gc(RetentionPolicy(keep_last=10), grace_seconds=0)
                    full.notes.append("GC ran on a 100 % full disk (freed its reserve)")
            except CasstoreError as e:
                full.error_time(time.monotonic() - t0)
                full.notes.append(f"{what} on a full disk: {type(e).__name__}: {str(e)[:120]}")
                if what == "gc":  # GC must run on a full disk: it is how space comes back
                    full.defects += 1
            except Exception as e:
                full.defects += 1
                full.notes.append(f"{what}: {type(e).__name__}: {e}")
            with contextlib.suppress(FileNotFoundError):
                (d / "filler").unlink()
        check_store(url, baseline, full, gc_may_expire=False)
        subprocess.run(["mount", "-o", "remount,ro", str(d)], check=False, capture_output=True)
        for what in ("log", "cat", "verify", "commit", "rollback", "gc", "tag"):
            ro.trials += 1
            ro.hostile += 1
            t0 = time.monotonic()
            try:
                repo = _repo(url)
                if what == "log":
                    repo.versions("m")
                elif what == "cat":
                    repo.open_file("m", "1.0.0", None).read()
                elif what == "verify":
                    if not repo.verify(read_data=True).ok:
                        ro.verify_fail += 1
                elif what == "commit":
                    repo.commit("m", [_file(tmp / "ro", 77)])
                elif what == "rollback":
                    repo.rollback("m", to="1.0.0", ref="prod")
                elif what == "gc":
                    repo.gc(RetentionPolicy(keep_last=1), grace_seconds=0)
                else:
                    repo.tag("m", "1.0.0", "x")
                if what in ("commit", "rollback", "gc", "tag"):
                    ro.notes.append(f"{what} succeeded on a read-only store?")
            except CasstoreError:
                ro.error_time(time.monotonic() - t0)
                if what in ("log", "cat", "verify"):
                    ro.defects += 1
                    ro.notes.append(f"{what} failed on a read-only store")
            except Exception as e:
                ro.defects += 1
                ro.notes.append(f"{what}: {type(e).__name__}: {e}")
        check_store(url, baseline, ro, gc_may_expire=False)
    rows[("disk full", "tmpfs 20m")] = full
    rows[("read-only", "tmpfs ro")] = ro
    return rows


# -- the run --------------------------------------------------------------------------------
def run(trials: int, fuzz: int, seed: int, race_seconds: float, fault_trials_n: int,
        s3: bool = True, race_rounds: int = 1) -> dict[tuple[str, str], Row]:
    rows: dict[tuple[str, str], Row] = {}
    tmp = Path(tempfile.mkdtemp(prefix="casstore-torture-"))
    try:
        stack = contextlib.ExitStack()
        with stack:
            stores: dict[str, Callable[[str], str]] = {"local": lambda n: str(tmp / "st" / n)}
            endpoint = None
            if s3:
                from casstore.testing.s3 import BUCKET, moto_s3_server

                endpoint = stack.enter_context(moto_s3_server())
                os.environ["CASSTORE_S3_ENDPOINT_URL"] = endpoint
                stores["s3"] = lambda n: f"s3://{BUCKET}/torture-{seed}-{n}"
            rows.update(fuzz_trials(fuzz, seed))
            rows.update(kill_trials(stores, trials, seed, tmp))
            if endpoint is not None and fault_trials_n:
                rows.update(fault_trials(endpoint, fault_trials_n, seed, tmp))
            rows.update(race_trials(stores, race_seconds, seed, tmp, race_rounds))
            rows.update(disk_full_and_read_only(tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def table(rows: dict[tuple[str, str], Row]) -> str:
    head = ("operation", "store", *COLUMNS)
    lines = [head]
    total = Row()
    for (op, store), r in rows.items():
        lines.append((op, store, *(str(getattr(r, c)) for c in COLUMNS)))
        total.add(r)
    lines.append(("TOTAL", "", *(str(getattr(total, c)) for c in COLUMNS)))
    widths = [max(len(x[i]) for x in lines) for i in range(len(head))]
    out = ["  ".join(x[i].ljust(widths[i]) for i in range(len(head))) for x in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=300, help="SIGKILL trials in all")
    ap.add_argument("--fuzz", type=int, default=10_000, help="fuzz cases in all")
    ap.add_argument("--faults", type=int, default=60, help="operations through the S3 proxy")
    ap.add_argument("--race-seconds", type=float, default=8.0)
    ap.add_argument("--race-rounds", type=int, default=10,
                    help="fresh stores raced per store kind")
    ap.add_argument("--seed", type=int, default=18)
    ap.add_argument("--no-s3", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    t0 = time.monotonic()
    rows = run(a.trials, a.fuzz, a.seed, a.race_seconds, a.faults, s3=not a.no_s3,
               race_rounds=a.race_rounds)
    bad = sum(getattr(r, c) for r in rows.values() for c in MUST_BE_ZERO)
    if a.json:
        print(json.dumps({f"{op} | {st}": r.__dict__ for (op, st), r in rows.items()}, indent=1))
    else:
        print(table(rows))
        notes = [n for r in rows.values() for n in r.notes]
        if notes:
            print("\nnotes:\n  " + "\n  ".join(notes[:40]))
        print(f"\nseed {a.seed}, {time.monotonic() - t0:.0f} s; "
              f"{'ALL ZERO' if not bad else f'{bad} FINDINGS'}")
    return 1 if bad else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        traceback.print_exc()
        sys.exit(130)
