"""The torture suite's short run (issue 18), part of the stress run (``-m slow``): a few
SIGKILLs of each operation, fuzzing of every decoder, races, a full disk and a read-only store;
everything that must be zero is zero. The full run is
``python -m benchmarks.torture --trials 300``."""

from __future__ import annotations

import pytest

from benchmarks import torture


@pytest.fixture(scope="module")
def short_run() -> dict:
    return torture.run(trials=8, fuzz=9 * 12, seed=18, race_seconds=2.0, fault_trials_n=0,
                       s3=False)


@pytest.mark.slow
def test_short_torture_run_loses_nothing(short_run):
    bad = {f"{op} | {st}": {c: getattr(r, c) for c in torture.MUST_BE_ZERO}
           for (op, st), r in short_run.items()
           if any(getattr(r, c) for c in torture.MUST_BE_ZERO)}
    notes = [n for r in short_run.values() for n in r.notes]
    assert not bad, (bad, notes[:10])


@pytest.mark.slow
def test_short_run_really_killed_and_fuzzed(short_run):
    """A run that killed nothing or fuzzed nothing could not have found anything."""
    kills = sum(r.kills for (op, _), r in short_run.items() if op.startswith("kill "))
    fuzzed = sum(r.hostile for (op, _), r in short_run.items() if op.startswith("fuzz "))
    assert kills >= 4 and fuzzed >= 9 * 12
    assert {op for op, _ in short_run if op.startswith("fuzz ")} == {
        f"fuzz {n}" for n in torture.FUZZ_TARGETS}


@pytest.mark.s3
@pytest.mark.slow
def test_fault_proxy_injects_and_nothing_is_lost(moto_s3, tmp_path, monkeypatch):
    """A few operations through the fault-injecting proxy between s3fs and moto."""
    monkeypatch.setenv("CASSTORE_S3_ENDPOINT_URL", moto_s3)
    rows = torture.fault_trials(moto_s3, 10, seed=3, tmp=tmp_path)
    assert sum(r.faults for r in rows.values()) > 0
    assert rows[("faults outage", "s3+proxy")].trials == 5
    for key, r in rows.items():
        assert all(getattr(r, c) == 0 for c in torture.MUST_BE_ZERO), (key, r.notes)


def test_table_names_every_column():
    text = torture.table({("kill commit", "local"): torture.Row(trials=1, kills=1)})
    for c in torture.COLUMNS:
        assert c in text
    assert "TOTAL" in text
