"""The CLI's bulk commands run with one malloc arena shared by all threads
(:mod:`casstore.cli._malloc`); light commands and library callers keep glibc's default.
Checked in fresh processes by glibc itself: ``malloc_stats()`` lists every arena in use after
a few threads have allocated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from casstore import Repository

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

_PROBE = """
import ctypes, sys, threading
from casstore.cli import main
code = main(sys.argv[1:])
big = bytearray(20 << 20)  # a chunk-sized buffer: from the heap, or mapped on its own
del big
def work():
    keep = [bytearray(4000) for _ in range(2000)]  # malloc'd (not pymalloc), below mmap size
barrier = [threading.Thread(target=work) for _ in range(4)]
for t in barrier: t.start()
for t in barrier: t.join()
sys.stderr.flush()
ctypes.CDLL(None).malloc_stats()
sys.exit(code)
"""


def _probe(probe: str, argv: tuple[str, ...], env: dict[str, str] | None
           ) -> subprocess.CompletedProcess[str]:
    """Run a casstore command inside ``probe`` (a Python program) in a fresh process."""
    p = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True,
                       timeout=120, env=env)
    assert p.returncode == 0, p.stderr
    return p


def _stats(*argv: str, env: dict[str, str] | None = None) -> str:
    return _probe(_PROBE, argv, env).stderr


def _arenas(*argv: str, env: dict[str, str] | None = None) -> int:
    return _stats(*argv, env=env).count("Arena ")


def _mapped_big_block(*argv: str, env: dict[str, str] | None = None) -> bool:
    """Whether a 20 MiB block malloc'd after the command was given its own mapping (glibc's
    default at first; the bulk commands' fixed threshold serves it from the heap)."""
    stats = _stats(*argv, env=env)
    return int(stats.rsplit("max mmap bytes", 1)[1].split("=")[1].split()[0]) >= 20 << 20


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("malloc")
    (root / "w.bin").write_bytes(bytes(range(256)) * 4096)
    Repository(str(root / "store")).commit("m", [root / "w.bin"])
    return root / "store"


def test_a_bulk_command_shares_one_arena_a_light_one_does_not(store: Path, tmp_path: Path):
    if _arenas("--store", str(store), "refs", "m") < 2:
        pytest.skip("this libc does not give threads arenas of their own")
    assert _arenas("--store", str(store), "checkout", "m", "-o", str(tmp_path / "out")) == 1


def test_the_users_malloc_arena_max_wins(store: Path, tmp_path: Path):
    import os

    env = {**os.environ, "MALLOC_ARENA_MAX": "3"}
    assert _arenas("--store", str(store), "checkout", "m", "-o", str(tmp_path / "o"),
                   env=env) > 1


def test_bulk_commands_fix_the_mmap_and_trim_thresholds(store: Path, tmp_path: Path):
    """Chunk-sized buffers come from the heap in a bulk command (reused, with a bounded top
    left resident), whatever the order of the process's first allocations."""
    import os

    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    if not _mapped_big_block("--store", str(store), "refs", "m", env=env):
        pytest.skip("this libc does not map large blocks by default")
    assert not _mapped_big_block("--store", str(store), "checkout", "m", "-o",
                                 str(tmp_path / "out"), env=env)
    mine = {**env, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}  # the user's choice wins
    assert _mapped_big_block("--store", str(store), "checkout", "m", "-o",
                             str(tmp_path / "o2"), env=mine)


_THREADS_PROBE = """
import os, sys, time
from casstore.cli import main
code = main(sys.argv[1:])
deadline = time.monotonic() + 5
while len(os.listdir("/proc/self/task")) > 1 and time.monotonic() < deadline:
    time.sleep(0.01)  # the command's pool threads may still be exiting
import numpy
numpy.ones(64) @ numpy.ones(64)
print(len(os.listdir("/proc/self/task")))
sys.exit(code)
"""


def _threads_after(*argv: str, env: dict[str, str]) -> int:
    """OS threads of a process that ran a casstore command, then imported numpy (its
    OpenBLAS starts its threads then): 1 when BLAS was told to use one thread."""
    return int(_probe(_THREADS_PROBE, argv, env).stdout.split()[-1])


def test_bulk_commands_keep_numpys_blas_to_one_thread(store: Path, tmp_path: Path):
    """numpy's OpenBLAS would start a spinning thread per core, on the cores the chunk
    threads use; a bulk command asks for none (the user's setting wins)."""
    import os

    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")}
    if _threads_after("--store", str(store), "refs", "m", env=env) < 2:
        pytest.skip("numpy's BLAS starts no threads of its own here (one core?)")
    assert _threads_after("--store", str(store), "checkout", "m", "-o",
                          str(tmp_path / "out"), env=env) == 1
    assert _threads_after("--store", str(store), "checkout", "m", "-o", str(tmp_path / "o2"),
                          env={**env, "OPENBLAS_NUM_THREADS": "2"}) == 2


_CHILDREN_PROBE = r"""
import json, os, sys, types
from casstore.cli._malloc import one_blas_thread
assert one_blas_thread() and os.environ["OPENBLAS_NUM_THREADS"] == "1"
from casstore.ops.hooks import notify_command, run_health_check
from casstore.ops.watch import metrics_from_command
quiet = 'test -z "$OPENBLAS_NUM_THREADS"'
version = types.SimpleNamespace(model="m", version="1.0.0", name="m_v1.0.0", id=b"\x01")
print(json.dumps({
    "check": run_health_check(quiet, version, "current")[0],
    "notify": notify_command(quiet, {}),
    "metrics": metrics_from_command("echo '{\"n\": '${#OPENBLAS_NUM_THREADS}'}'")[1],
    "mine": os.environ.get("OPENBLAS_NUM_THREADS"),
}))
"""


def test_commands_casstore_runs_do_not_inherit_its_own_settings():
    """The BLAS setting is for casstore's process: a health check, a notification command
    and a metrics command it runs (which may use numpy themselves) do not inherit it."""
    import json
    import os

    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")}
    p = subprocess.run([sys.executable, "-c", _CHILDREN_PROBE], capture_output=True,
                       text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout.splitlines()[-1])
    assert got == {"check": True, "notify": None, "metrics": {"n": 0}, "mine": "1"}
