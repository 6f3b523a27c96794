"""``python -m benchmarks.scale --quick`` runs, and its request counts hold issue 12's bounds
(counts, never timings)."""

from __future__ import annotations

from pathlib import Path

from benchmarks import scale


def test_scale_quick_run_holds_the_request_bounds(tmp_path: Path, capsys):
    r = scale.main(["--quick", "--stores", "local", "--workdir", str(tmp_path)])
    ops = r["one_model"]["local"]["ops"]
    for n in ("10", "30"):
        assert ops["commit"][n]["calls"] <= 20
        assert ops["show latest"][n]["calls"] <= 6
        assert ops["log -n 20"][n]["calls"] <= 10
        assert ops["rollback --to"][n]["calls"] <= 20
        assert ops["promote latest"][n]["calls"] <= 20
    big = r["big_target"]["local"]
    assert big["rollback --to big"]["calls"] == big["rollback --to small"]["calls"] <= 20
    assert big["promote big --verify"]["calls"] > big["chunks"]
    assert r["reflog_window"]["reflog_entries_read"] == 0
    assert r["log_rss"]["peak_rss_mb"] > 0
    assert "| commit |" in capsys.readouterr().out
