"""End to end: a run killed with SIGKILL after epoch 2 resumes from the store in a new process
and ends bit-identical (weights, optimizer and scheduler state) to an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

WORKER = Path(__file__).with_name("_train_worker.py")


def start(store: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, str(WORKER), str(store), str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(p: subprocess.Popen) -> str:
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    return out


def same(a, b, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(  # the same bits (NaN-safe, -0.0 distinct)
            a.contiguous().view(-1).view(torch.uint8), b.contiguous().view(-1).view(torch.uint8)
        ), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), where
        for k in a:
            same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}/{i}")
    else:
        assert type(a) is type(b) and a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.slow
def test_killed_run_resumes_bit_identical(tmp_path: Path):
    whole = start(tmp_path / "whole", tmp_path / "whole.pt")
    killed = start(tmp_path / "resumed", tmp_path / "unused.pt", "--hang-after-epoch", "1")
    assert killed.stdout is not None
    lines = [killed.stdout.readline().strip() for _ in range(2)]
    assert lines == ["saved 0", "saved 1"], killed.stderr.read() if killed.stderr else ""
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert "saved 2" in finish(whole)

    from casstore import Repository

    versions = Repository(str(tmp_path / "resumed")).versions("run")
    assert [v.manifest.extra["epoch"] for v in versions] == [0, 1]  # epoch 2 never ran
    out = finish(start(tmp_path / "resumed", tmp_path / "resumed.pt"))
    assert out.split() == ["saved", "2", "done"]  # only the third epoch ran again
    a = torch.load(tmp_path / "whole.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed.pt", weights_only=True)
    same(a, b)
    assert a["step"] == 15 and a["optimizer"]["state"]  # the run did train
    import casstore.torch as ct

    stored = ct.load_checkpoint(str(tmp_path / "resumed"), "run")  # the last checkpoint
    same(dict(sorted(a["model"].items())), dict(sorted(stored.model.items())))
    same(a["optimizer"], stored.optimizer)
