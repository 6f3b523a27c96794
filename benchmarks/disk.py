"""The disk the benchmark writes to, made the same for every tool, and measured.

On a thin-provisioned virtual disk whose file system is mounted with online ``discard`` (this
machine's: ext4 ``-o discard`` on a virtio disk), a block the file system has never written,
or has freed and discarded, is slow to write the first time: the host allocates it. Measured
here with ``dd conv=fsync`` of 1 GiB to a new file: 0.35-0.38 GB/s once the blocks freed by
a deletion have been discarded (8 s later and on), 1.9-2.4 GB/s when the file is written
right after another file of its size was deleted (the freed blocks are reused before the host
drops them), 4 GB/s over blocks already written. So a tool timed right after another tool's
files were deleted wrote into warm blocks and a tool timed later into cold ones: the same copy
of the series took 8.5 s in one round and 1.6 s in the next.

:func:`settle` gives every timed write the same disk: the page cache written back, and on
such a file system the freed blocks left to go cold. :func:`dd_fsync` measures the disk in the
same state, so a write-bound figure can be set against the disk's own bound.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

SETTLE_S = 8.0
"""Seconds for freed blocks to go cold after a sync (1 GiB written after 0 s: 1.9-2.4 GB/s;
after 2-5 s: 0.5-0.9 GB/s; after 8, 15 or 25 s: 0.34-0.38 GB/s)."""


def mount_options(path: Path, mounts: Path = Path("/proc/mounts")) -> list[str]:
    """The mount options of the file system holding ``path`` (empty where unknown)."""
    target = os.path.realpath(path)
    best, options = "", []
    try:
        with open(mounts) as f:
            for line in f:
                fields = line.split()
                if len(fields) < 4:
                    continue
                point = fields[1]
                inside = target == point or target.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, options = point, fields[3].split(",")
    except OSError:
        return []
    return options


def discards(path: Path) -> bool:
    """True if the file system holding ``path`` discards freed blocks as it frees them."""
    return "discard" in mount_options(path)


def settle(path: Path) -> float:
    """Before a timed write under ``path``: write back the page cache and, where freed
    blocks are discarded, wait until they are (every tool then writes cold blocks). Returns
    the seconds waited."""
    os.sync()
    if not discards(path):
        return 0.0
    time.sleep(SETTLE_S)
    return SETTLE_S


def dd_fsync(source: Path, work: Path, *, settled: bool = True) -> float:
    """Bytes per second of ``dd ... conv=fsync`` copying ``source`` to a new file under
    ``work``, after :func:`settle` (unless ``settled`` is False: the caller did); the file is
    removed."""
    out = work / "dd.out"
    if settled:
        settle(work)
    t0 = time.perf_counter()
    subprocess.run(["dd", f"if={source}", f"of={out}", "bs=16M", "conv=fsync", "status=none"],
                   check=True)
    seconds = time.perf_counter() - t0
    out.unlink()
    return source.stat().st_size / seconds
