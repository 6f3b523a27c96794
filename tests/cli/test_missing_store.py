"""Issue 15 item 1: a missing or mistyped store is an error, never an empty, healthy store."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from casstore.testing.s3 import free_port
from tests import series
from tests.cli_helpers import run

READ_COMMANDS = [
    ["models"],
    ["verify"],
    ["stats"],
    ["log", "m"],
    ["show", "m", "latest"],
    ["query"],
    ["refs", "m"],
    ["reflog", "m"],
    ["status", "m"],
    ["resolve", "m"],
    ["gc", "--dry-run"],
    ["policy", "show"],
    ["rollback", "m", "--undo"],
    ["checkout", "m", "latest", "-o", "OUT"],
]


@pytest.mark.parametrize("argv", READ_COMMANDS, ids=lambda a: a[0])
def test_missing_store_read_commands_exit_3(tmp_path: Path, argv: list[str]):
    typo = tmp_path / "typo"
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    r = run(*argv, store=typo)
    assert r.code == 3, (argv, r.code, r.out, r.err)
    assert f"no casstore store at {typo}; run `casstore init` or check --store/CASSTORE_STORE" \
        in r.err
    assert not typo.exists()  # nothing was created


def test_missing_store_a_file_is_not_a_store(tmp_path: Path):
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(b"not a store")
    r = run("models", store=ckpt)
    assert r.code == 3 and "no casstore store at" in r.err


def test_missing_store_writing_commands_create_it(tmp_path: Path):
    f = series.save(tmp_path / "in" / "m.safetensors", series.tensors(n=2))
    store = tmp_path / "new"
    assert run("commit", "m", f, store=store).code == 0
    assert run("models", store=store).out.split() == ["m"]
    other = tmp_path / "init-only"
    assert run("init", store=other).code == 0
    r = run("verify", store=other)
    assert r.code == 0 and "ok" in r.out
    r = run("push", tmp_path / "pushed", "m", "--all", store=store)
    assert r.code == 0, r.err
    assert run("models", store=tmp_path / "pushed").out.split() == ["m"]


def test_missing_store_scheme_typo_is_a_usage_error():
    r = run("models", store="stor://x")
    assert r.code == 2 and "stor" in r.err and "Traceback" not in r.err


def test_dead_s3_endpoint_fails_with_a_message(tmp_path: Path):
    """Connection refused: every layer's retries used to multiply (~45 s); now RetryingStore
    is the one retry layer (its time budget and tries are in the message). The time it takes
    is measured by ``python -m benchmarks.dead_endpoint``, not asserted here."""
    env = {
        "CASSTORE_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
    }
    r = run("models", store="s3://bucket/prefix", env=env)
    assert r.code == 7, (r.code, r.err)
    assert "Could not connect to the endpoint URL" in r.err and "gave up after 5 tries" in r.err
    assert len(r.err.strip().splitlines()) == 1


def test_gs_url_without_gcsfs_names_the_gcs_extra(monkeypatch: pytest.MonkeyPatch):
    """Issue 15 item 8: the error names the extra to install (``casstore[gcs]``)."""
    monkeypatch.setitem(sys.modules, "gcsfs", None)  # as if gcsfs were not installed
    r = run("models", store="gs://bucket/prefix")
    assert r.code == 6 and "pip install casstore[gcs]" in r.err, r.err
