"""kill -9 during a commit leaves a store that reads every earlier version; a rerun succeeds."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from casstore import Repository
from tests import series

pytestmark = pytest.mark.slow


def test_sigkill_during_commit(tmp_path: Path):
    store = tmp_path / "store"
    base = series.tensors(n=8, size=4 << 20, seed=1)
    first = series.save(tmp_path / "v1" / "model.safetensors", base)
    repo = Repository(str(store))
    repo.commit("m", [first])
    rng = random.Random(1234)
    # The kill lands at a random fraction of how long a whole commit takes on this machine
    # (the first trial runs to the end and measures it; a trial that finishes before its kill
    # shortens the estimate), so a faster or slower machine still kills mid-commit.
    whole: float | None = None
    killed = trial = 0
    while killed < 4 and trial < 16:  # fresh data each time, so every commit has real work
        big = tmp_path / f"big{trial}"
        for i in range(3):
            series.save(big / f"part{i}.safetensors",
                        series.tensors(n=6, size=4 << 20, seed=1000 * trial + i))
        env = dict(os.environ, CASSTORE_STORE=str(store))
        start = time.monotonic()
        p = subprocess.Popen([sys.executable, "-m", "casstore", "commit", "m", str(big)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            p.wait(timeout=None if whole is None else rng.uniform(0.05, 0.95) * whole)
            took = time.monotonic() - start
            assert p.returncode == 0, p.stderr.read().decode() if p.stderr else ""
            whole = took if whole is None else min(whole, took)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            killed += 1
            p.wait()
        reopened = Repository(str(store))
        for v in reopened.history("m"):  # every version that landed reads back intact
            out = tmp_path / f"out{trial}-{v.version}"
            reopened.checkout("m", v.version, out)
        assert hashlib.sha256((tmp_path / f"out{trial}-1.0.0" / "model.safetensors")
                              .read_bytes()).digest() == hashlib.sha256(first.read_bytes()).digest()
        assert reopened.get_version("m", "@current").version == "1.0.0"
        trial += 1
    assert killed >= 4
    res = Repository(str(store)).commit("m", [big])
    out = tmp_path / "final"
    Repository(str(store)).checkout("m", res.version.version, out)
    for f in big.iterdir():
        assert (out / f.name).read_bytes() == f.read_bytes()
