"""One rollback across three clouds: an S3 (moto), an Azure (Azurite) and a GCS
(fake-gcs-server) bucket, switched by one ``casstore rollback --replica ...`` command."""

from __future__ import annotations

from pathlib import Path

import pytest

from casstore import Repository
from casstore.ops.transfer import transfer
from casstore.repo.keys import chunk_key
from tests import series
from tests.cli_helpers import run

pytestmark = [pytest.mark.s3, pytest.mark.azure, pytest.mark.gcs]


def test_rollback_across_s3_azure_and_gcs(
    tmp_path: Path, s3_url: str, azure_url: str, gcs_url: str
) -> None:
    local = Repository(str(tmp_path / "local"))
    base = series.tensors(n=6, size=64 << 10)
    local.commit("m", [series.save(tmp_path / "a" / "w.safetensors", base)], tags=["stable"])
    tuned = series.finetune(base)
    local.commit("m", [series.save(tmp_path / "b" / "w.safetensors", tuned)])
    buckets = [Repository(url) for url in (s3_url, azure_url, gcs_url)]
    for bucket in buckets:
        transfer(local.ctx, bucket.ctx, local.versions("m"), refs=["current"])
        bucket.promote("m", "1.0.1", reason="canary")

    r = run("rollback", "m", "--to", "1.0.0", "--reason", "bad canary", "--replica", azure_url,
            "--replica", gcs_url, "--json", store=s3_url, subprocess=True)  # fmt: skip
    assert r.code == 0, r.err
    stores = r.json()["stores"]
    assert [s["ok"] for s in stores] == [True, True, True], stores
    for bucket in buckets:
        assert bucket.resolve("m").version == "1.0.0"
        last = bucket.refs.reflog("m", "current")[-1]
        assert (last.new.target.version, last.reason) == ("1.0.0", "bad canary")

    # one bucket lacks a chunk of the target: with --verify (every chunk asked for; by default
    # a rollback checks only that the target is indexed) the command refuses before any moves
    v = buckets[2].get_version("m", "1.0.1")
    buckets[2].store.delete(chunk_key(v.manifest.files[0].object_digests()[-1]))
    r = run("rollback", "m", "--to", "1.0.1", "--replica", azure_url, "--replica", gcs_url,
            "--verify", "--json", store=s3_url)  # fmt: skip
    assert r.code == 1 and "Traceback" not in r.err
    stores = r.json()["stores"]
    assert [s["ok"] for s in stores] == [False, False, False]
    assert "missing" in stores[2]["message"] and stores[2]["store"] == gcs_url
    assert {b.resolve("m").version for b in buckets} == {"1.0.0"}
