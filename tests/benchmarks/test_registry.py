"""Sections that cannot run are reported as skipped or failed, never crash the run."""

from __future__ import annotations

from pathlib import Path

from benchmarks.registry import Context, Section, Skip, run_section
from benchmarks.report import targets


def _ctx(tmp_path: Path) -> Context:
    return Context(size_mb=1, quick=True, out=tmp_path, work=tmp_path)


def test_missing_module_skips(tmp_path):
    s = Section("x", "X", lambda ctx: {"a": 1}, requires=("no_such_module_here",))
    r = run_section(s, _ctx(tmp_path))
    assert r["status"] == "skipped" and "no_such_module_here" in r["reason"]


def test_skip_and_error_and_ok(tmp_path):
    def skip(ctx):
        raise Skip("not here")

    def boom(ctx):
        raise ValueError("bad")

    assert run_section(Section("s", "S", skip), _ctx(tmp_path))["reason"] == "not here"
    r = run_section(Section("e", "E", boom), _ctx(tmp_path))
    assert r["status"] == "error" and "ValueError: bad" in r["reason"]
    r = run_section(Section("o", "O", lambda ctx: {"v": 2}), _ctx(tmp_path))
    assert r["status"] == "ok" and r["data"] == {"v": 2}


def test_targets_without_results_are_not_applicable():
    ts = targets({})
    assert [t.issue for t in ts] == [7] * 6 + [14] * 6 + [13] * 7
    assert {t.status for t in ts} == {"N/A"}


def test_target_miss_says_by_how_much():
    peers = {"tools": {
        "casstore": {"ingest_MBps": 200.0, "restore_MBps": 100.0, "stored_vs_unique": 1.02,
                     "stored_bytes": 102},
        "borg": {"ingest_MBps": 100.0, "restore_MBps": 50.0},
    }, "skipped": {"restic": "restic not installed"}, "unique_tensor_bytes": 100}
    ts = {t.name: t for t in targets({"peers": {"status": "ok", "data": peers}})}
    borg = ts["ingest throughput vs borg"]
    assert borg.status == "MISS" and "33.3% short of" in borg.line()
    assert ts["ingest throughput vs restic"].status == "N/A"
    assert "restic not installed" in ts["ingest throughput vs restic"].line()
    assert ts["stored bytes vs unique tensor bytes"].status == "MISS"
