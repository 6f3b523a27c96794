"""``python -m benchmarks --quick`` end to end: the outputs are there and correct (restores
byte-identical, every target line present). Never asserts on timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    out = tmp_path_factory.mktemp("bench-out")
    work = tmp_path_factory.mktemp("bench-work")
    p = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out), "--workdir",
         str(work), "--skip", "torch", "push_pull"],  # those two belong to other modules
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads((out / "results.json").read_text()), out


pytestmark = [pytest.mark.slow, pytest.mark.torch]


def test_every_chosen_section_ran(quick_run):
    doc, _ = quick_run
    sections = doc["sections"]
    assert set(sections) == {"series", "peers", "rss_2g", "rollback", "gc", "ingest", "latency",
                             "sweep", "training", "codecs"}
    for name, r in sections.items():
        assert r["status"] == "ok", (name, r.get("reason"), r.get("traceback"))


def test_casstore_restores_byte_identical_and_dedups(quick_run):
    doc, _ = quick_run
    peers = doc["sections"]["peers"]["data"]
    cas = peers["tools"]["casstore"]
    assert cas["restored_identical"] is True
    assert all(cas["restored_identical_files"].values())
    assert len(cas["restored_identical_files"]) == peers["versions"] == 8
    # dedup, not speed: the store holds about the unique tensor bytes (headers, manifests)
    assert cas["stored_bytes"] < 1.1 * peers["unique_tensor_bytes"] < peers["logical_bytes"]
    for name, t in peers["tools"].items():  # every peer that ran restored correctly too
        assert t["restored_identical"], name
        for key in ("ingest_MBps", "restore_MBps", "stored_bytes", "ingest_peak_rss",
                    "stored_vs_unique"):
            assert t[key] > 0, (name, key)
    assert set(peers["tools"]) | set(peers["skipped"]) == {"casstore", "casstore-off", "restic",
                                                           "borg", "copy"}


def test_targets_and_report(quick_run):
    doc, out = quick_run
    targets = doc["targets"]
    assert len([t for t in targets if t["issue"] == 7]) == 6
    assert len([t for t in targets if t["issue"] == 13]) == 7
    assert len([t for t in targets if t["issue"] == 14]) == 6
    assert all(t["status"] in ("PASS", "MISS", "N/A") for t in targets)
    report = (out / "report.md").read_text()
    assert "## Headline" in report and "## Targets: ingest, storage, restore, memory" in report
    assert "## Targets: chunk encodings" in report
    assert "## Targets: command latency, memory of every command, transfers" in report
    assert "`casstore refs m` median" in report and "restore peak RSS" in report
    for t in targets:
        assert t["line"] in report
    assert "| casstore |" in report


def test_other_sections_have_data(quick_run):
    doc, out = quick_run
    s = doc["sections"]
    assert s["rollback"]["data"]["large"]["chunks"] >= s["rollback"]["data"]["small"]["chunks"]
    assert [r["chunks"] for r in s["gc"]["data"]["runs"]] == [200, 1000]
    assert all(r["chunks_deleted"] > 0 for r in s["gc"]["data"]["runs"])
    assert s["rss_2g"]["data"]["tools"]["casstore"]["peak_rss"] > 0
    tr = s["training"]["data"]
    saves = tr["config"]["steps"] // tr["config"]["save_every"]
    for kind in ("fp32", "bf16", "optim"):
        cas = tr["kinds"][kind]["casstore"]
        assert cas["restored_identical"] and len(cas["restored_identical_files"]) == saves >= 4
        assert tr["kinds"][kind]["casstore-off"]["stored_vs_logical"] > 0.99
    for e in tr["entropy"].values():  # the bound the training targets are reported with
        assert 0 < e["given_previous"] <= e["xor_previous"] + 1e-4 and e["plain"] < 1
    rows = s["codecs"]["data"]["rows"]
    assert all(r["round_trip"] for r in rows if r["codec"].startswith("casstore"))
    assert {r["mode"] for r in rows} == {"plain", "xor"}
    sweep = s["sweep"]["data"]
    assert {r["setting"]["kind"] for r in sweep["results"]} == {"tensor", "fastcdc", "fixed"}
    assert sweep["recommendation"]["command"].startswith("casstore init --chunker ")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    for name in ("peers.png", "rss_2g.png", "rollback.png", "gc.png", "sweep.png"):
        assert (out / name).stat().st_size > 1000
