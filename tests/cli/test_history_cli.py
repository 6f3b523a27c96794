"""The history commands at the command line (issue 12): ``log -n/--all``, ``query --order-by
--limit``, ``stats --exact``, ``reflog --at``, ``rollback --verify``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tests.cli_helpers import run


@pytest.fixture
def store(tmp_path: Path) -> Path:
    store = tmp_path / "store"
    for i, acc in enumerate([0.5, 0.9, 0.7, 0.8]):
        f = tmp_path / f"w{i}.bin"
        f.write_bytes(b"%d" % i * 5000)
        assert run("commit", "m", f, "-m", f"accuracy={acc}", store=store).code == 0
    return store


def test_log_limit_and_all(store: Path):
    r = run("log", "m", "-n", "2", "--json", store=store)
    assert [v["semver"] for v in r.json()["versions"]] == ["1.0.3", "1.0.2"]
    r = run("log", "m", "--all", store=store)
    assert r.code == 0 and r.out.index("m_v1.0.3_") < r.out.index("m_v1.0.0_")  # newest first
    assert run("log", "m", "-n", "0", store=store).code == 2


def test_query_order_by_and_limit(store: Path):
    r = run("query", "m", "--order-by", "accuracy", "--limit", "2", "--json", store=store)
    assert [v["semver"] for v in r.json()["versions"]] == ["1.0.1", "1.0.3"]
    r = run("query", "--order-by", "accuracy:asc", "-n", "1", "--json", store=store)
    assert [v["semver"] for v in r.json()["versions"]] == ["1.0.0"]
    r = run("query", "m", "--order-by", "accuracy:sideways", store=store)
    assert r.code == 2 and "bad order" in r.err


def test_stats_counters_and_exact(store: Path):
    counted = run("stats", "--json", store=store).json()
    exact = run("stats", "--exact", "--json", store=store).json()
    assert counted["exact"] is False and exact["exact"] is True
    for k in ("versions", "logical_bytes", "stored_bytes", "chunks"):
        assert counted[k] == exact[k], k
    assert "from counters" in run("stats", store=store).out


def test_reflog_at_and_rollback_verify(store: Path):
    before = dt.datetime.now(dt.timezone.utc).isoformat()
    assert run("promote", "m", "1.0.2", store=store).code == 0
    assert run("rollback", "m", "--to", "1.0.1", "--verify", store=store).code == 0
    r = run("reflog", "m", "--at", before, "--json", store=store)
    assert [e["new"]["target"]["semver"] for e in r.json()["entries"]] == ["1.0.0"]
    r = run("reflog", "m", "--json", store=store)
    assert len(r.json()["entries"]) == 3
