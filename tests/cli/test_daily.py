"""Issue 15 item 8: the small daily things."""

from __future__ import annotations

from pathlib import Path

import pytest

from casstore import Repository
from tests import series
from tests.cli_helpers import run


@pytest.fixture
def store(tmp_path: Path) -> Path:
    store = tmp_path / "store"
    base = series.tensors(n=3)
    for i in range(2):
        f = series.save(tmp_path / f"v{i}" / "m.safetensors", series.finetune(base, seed=i))
        assert run("commit", "m", f, "-m", f"accuracy=0.9{i}", store=store).code == 0
    return store


def test_daily_version_flag():
    import casstore

    r = run("--version")
    assert r.code == 0 and r.out.strip() == f"casstore {casstore.__version__}"


def test_daily_reflog_of_unknown_model_exits_3(store: Path):
    r = run("reflog", "nosuchmodel", store=store)
    assert r.code == 3 and "unknown model 'nosuchmodel'" in r.err
    r = run("show", "nosuchmodel", store=store)
    assert r.code == 3


def test_daily_policy_show_prints_no_python_dicts(store: Path):
    r = run("policy", "set", "--keep-last", "3", "--keep-tag", "stable", "--keep-best",
            "accuracy:max", store=store)
    assert r.code == 0, r.err
    for out in (r.out, run("policy", "show", store=store).out):
        assert "{" not in out and "[" not in out and "'" not in out, out
        assert "keep_last=3" in out and "stable" in out


def test_daily_commit_result_repr_is_one_line(tmp_path: Path):
    f = series.save(tmp_path / "big" / "m.safetensors", series.tensors(n=40, size=4096))
    res = Repository(tmp_path / "s").commit("m", [f])
    text = repr(res)
    assert "\n" not in text and len(text) < 200 and res.version.name in text


def test_daily_relative_times_everywhere_a_time_is_taken(store: Path):
    import datetime as dt

    from casstore.repo.times import parse_when

    now = dt.datetime(2026, 12, 1, 12, tzinfo=dt.timezone.utc)
    assert parse_when("7d", now=now) == now - dt.timedelta(days=7)
    assert parse_when("90s ago", now=now) == now - dt.timedelta(seconds=90)
    assert parse_when("2w", now=now) == now - dt.timedelta(weeks=2)
    r = run("query", "m", "--since", "7d", "--json", store=store)
    assert [v["semver"] for v in r.json()["versions"]] == ["1.0.0", "1.0.1"]
    r = run("query", "m", "--until", "1h", "--json", store=store)
    assert r.json()["versions"] == []
    r = run("reflog", "m", "--at", "1h", "--json", store=store)
    assert r.code == 0 and r.json()["entries"] == []  # current did not exist an hour ago
    r = run("reflog", "m", "--at", "0s", "--json", store=store)
    assert [e["new"]["target"]["semver"] for e in r.json()["entries"]] == ["1.0.0"]
    for option in (["query", "--since"], ["query", "--until"], ["reflog", "m", "--at"]):
        r = run(*option, "7 days", store=store)
        assert r.code == 2 and "a time ago: 90s, 30m, 12h, 7d, 2w" in r.err


def test_daily_show_without_current_uses_latest_and_says_so(store: Path, tmp_path: Path):
    pulled = tmp_path / "pulled"
    assert run("push", pulled, "m", "1.0.0", store=store).code == 0
    assert run("push", pulled, "m", "1.0.1", store=store).code == 0
    r = run("show", "m", "--json", store=pulled)
    assert r.code == 0 and r.json()["semver"] == "1.0.1"
    assert "no ref 'current'; showing latest (1.0.1)" in r.err
    r = run("show", "m", store=store)  # with current: no note
    assert r.code == 0 and "1.0.0" in r.out and r.err == ""


def test_daily_human_output_shows_no_python_syntax(store: Path):
    run("tag", "m", "1.0.1", "stable", store=store)
    for argv in (["show", "m", "1.0.1"], ["diff", "m", "1.0.0", "1.0.1", "--tensors"],
                 ["log", "m"], ["refs", "m"], ["reflog", "m"]):
        r = run(*argv, store=store)
        assert r.code == 0, (argv, r.err)
        for line in r.out.splitlines():
            assert not any(c in line for c in "{}[]'"), (argv, line)


def test_daily_init_on_existing_store_shows_changes_and_needs_force_for_chunker(store: Path):
    r = run("init", "--chunker", "fastcdc", store=store)
    assert r.code == 2 and "init would change chunker: tensor" in r.err and "--force" in r.err
    assert run("init", "--json", store=store).json()["changes"] == {}  # nothing changes
    r = run("init", "--single-writer", store=store)
    assert r.code == 0 and "changed single_writer: False -> True" in r.out
    r = run("init", "--chunker", "fastcdc", "--force", "--single-writer", "--json", store=store)
    assert r.code == 0 and r.json()["changes"]["chunker"]["old"].startswith("tensor")
    assert r.json()["chunker"].startswith("fastcdc")


def test_daily_tune_warns_when_input_has_no_redundancy(tmp_path: Path):
    one = series.save(tmp_path / "one" / "m.safetensors", series.tensors(n=6))
    r = run("tune", one.parent)
    assert r.code == 0, r.err
    assert "warning: the input has no redundancy to find" in r.out
    doc = run("tune", one.parent, "--json").json()
    assert doc["recommendation"]["is_default"] and doc["recommendation"]["warning"]


def test_daily_check_policy_format_documented_and_bad_policy_one_line(store: Path,
                                                                      tmp_path: Path):
    bad = tmp_path / "bad.json"
    for text, says in [('{"rules": [{"metric": "accuracy", "direction": "up"}]}',
                        "rules.0.direction: Input should be 'higher' or 'lower'"),
                       ('{"rules": [{"metrc": "accuracy"}]}', "rules.0.metrc: unknown field"),
                       ('{"rules": [{"threshold": 1}]}', "rules.0.metric: Field required"),
                       ("{not json", "is not JSON")]:
        bad.write_text(text)
        r = run("check", "m", "--policy", bad, store=store)
        assert r.code == 2 and says in r.err and len(r.err.strip().splitlines()) == 1, r.err
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "### Regression policy" in readme
    for field in ("metric", "direction", "threshold", "relative", "required", "max"):
        assert f"| `{field}" in readme
    assert "Regression policy" in " ".join(run("check", "--help").out.split())
