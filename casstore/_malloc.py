"""Keep chunk-sized buffers out of malloc's heaps, so a commit's memory stays near its budget.

glibc serves big allocations with their own memory maps, but each time such a block is freed
it raises that threshold (up to 32 MiB), after which 16 MiB chunk buffers come from the
per-thread heaps, which keep their pages: a commit's peak RSS then grows 20-40 MiB past its
byte budget (the benchmark series' base, committed by the CLI: 134 -> 111 MiB with encoding
off, 167 -> 125 MiB with the default encoding). Fixing the threshold at 1 MiB keeps every
chunk-sized buffer in its own map, returned to the system when freed. A no-op elsewhere than
glibc (musl's ``mallopt`` does nothing; macOS has none)."""

from __future__ import annotations

import sys

M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>
THRESHOLD = 1 << 20

_done = False


def keep_large_buffers_mapped() -> None:
    """Once per process: large buffers get their own memory map (see the module docstring)."""
    global _done
    if _done:
        return
    _done = True
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(M_MMAP_THRESHOLD, THRESHOLD)
