"""``python -m benchmarks.ref_race`` runs (a small local race) and its figures add up."""

from __future__ import annotations

import json

from benchmarks import ref_race


def test_small_local_race_adds_up(capsys) -> None:
    ref_race.main(["--procs", "3", "--moves", "4", "--backends", "local", "--json"])
    r = json.loads(capsys.readouterr().out)["local"]
    assert r["attempted"] == 12
    assert r["landed"] + r["conflicts"] == r["attempted"]
    assert r["landed"] >= 1 and r["reflog_entries"] == r["landed"]
    assert r["unbroken_chain"] is True
