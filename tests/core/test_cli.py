"""The CLI commands, run in-process through ``main`` (the demo end to end in a subprocess)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests import series
from tests.cli_helpers import run


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    base = series.tensors(n=6)
    return [
        series.save(tmp_path / "v1" / "model.safetensors", base),
        series.save(tmp_path / "v2" / "model.safetensors", series.finetune(base)),
    ]


def test_commit_log_show_checkout_stats(tmp_path: Path, files: list[Path]):
    store = tmp_path / "store"
    r = run(
        "commit",
        "bert",
        files[0],
        "--metric",
        "accuracy=0.9",
        "--tag",
        "stable",
        "--json",
        store=store,
    )
    assert r.code == 0, r.err
    d = r.json()
    assert d["model_name"] == "bert" and d["semver"] == "1.0.0" and len(d["id"]) == 64
    assert d["version"].startswith("v1.0.0_")
    r = run(
        "commit",
        "bert",
        files[1],
        "-m",
        "accuracy=0.95",
        "--message",
        "tuned",
        "--json",
        store=store,
    )
    assert r.json()["semver"] == "1.0.1"
    r = run("log", "bert", "--json", store=store)
    assert [v["semver"] for v in r.json()["versions"]] == ["1.0.1", "1.0.0"]  # newest first
    assert r.json()["refs"] == {"current": "1.0.0"}
    r = run("log", "bert", store=store)
    assert r.code == 0 and "bert_v1.0.1_" in r.out
    r = run("show", "bert", "v1.0.1", "--json", store=store)
    assert r.json()["change_log"] == "tuned"
    out = tmp_path / "out"
    r = run("checkout", "bert", "1.0.1", "-o", out, store=store)
    assert r.code == 0, r.err
    assert (
        hashlib.sha256((out / "model.safetensors").read_bytes()).digest()
        == hashlib.sha256(files[1].read_bytes()).digest()
    )
    r = run("cat", "bert", "@current", store=store, binary=True)
    assert r.code == 0 and r.out == files[0].read_bytes()
    r = run("stats", "--json", store=store)
    s = r.json()
    for key in ("logical_bytes", "stored_bytes", "chunks", "versions"):
        assert key in s
    assert s["versions"] == 2 and s["stored_bytes"] < s["logical_bytes"]
    r = run("query", "--where", "accuracy>=0.92", "--json", store=store)
    assert [v["semver"] for v in r.json()["versions"]] == ["1.0.1"]
    r = run("diff", "bert", "1.0.0", "1.0.1", "--json", store=store)
    assert r.json()["files"][0]["tensors"]["changed"] == ["layers.4.weight", "layers.5.weight"]
    r = run("tag", "bert", "1.0.1", "production", store=store)
    assert r.code == 0
    r = run("untag", "bert", "1.0.1", "production", "--json", store=store)
    assert r.json()["tags"] == []


def test_store_from_environment_and_default(tmp_path: Path, files: list[Path]):
    env_store = tmp_path / "envstore"
    r = run("commit", "m", files[0], env={"CASSTORE_STORE": str(env_store)})
    assert r.code == 0, r.err
    assert (env_store / "config").exists()
    r = run("commit", "m", files[0], cwd=tmp_path)
    assert r.code == 0, r.err
    assert (tmp_path / ".casstore" / "config").exists()


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["log", "nope"], 3, "unknown model"),
        (["show", "m", "9.9.9"], 3, "no version"),
        (["show", "m", "1.2"], 2, "malformed version"),
        (["commit", "a/b", "FILE"], 2, "invalid model name"),
        (["commit", "..", "FILE"], 2, "invalid model name"),
        (["commit", "m", "/definitely/missing"], 2, "no such file"),
        (["commit", "m", "FILE", "--version", "1.0.0"], 4, "already exists"),
        (["query", "--where", "accuracy>>1"], 2, "metric condition"),
        (["checkout", "m", "@nope", "-o", "OUT"], 3, "no ref"),
    ],
)
def test_errors_are_clear_and_nonzero(tmp_path: Path, files: list[Path], args, code, needle):
    store = tmp_path / "store"
    assert run("commit", "m", files[0], store=store).code == 0
    args = [
        str(files[0]) if a == "FILE" else str(tmp_path / "o") if a == "OUT" else a for a in args
    ]
    r = run(*args, store=store)
    assert r.code == code, (r.code, r.err)
    assert needle in r.err
    assert "Traceback" not in r.err


def test_demo_runs(tmp_path: Path):
    r = run("demo", "--size-mb", "4", cwd=tmp_path, subprocess=True)
    assert r.code == 0, r.err
    assert "rollback" in r.out and "dedup" in r.out
    r = run("log", "demo-llm", "--json", cwd=tmp_path)
    assert r.code == 0
    assert r.json()["refs"]["current"] == "1.0.1"
