"""The allocator setting of a ``casstore`` process that moves chunk data.

A commit's writer threads each allocate and free chunk-sized buffers (read windows, split
streams, compressed streams, decoded delta bases). glibc gives every thread its own arena and
keeps what a thread freed for that thread's next request, so the process's peak RSS grows well
past the buffers alive at once: committing the benchmark's 512 MiB full-finetune checkpoint
peaked at ~195 MiB with ~112 MiB of live buffers. One arena shared by all threads lets any
thread reuse what another freed: the same commits peak at ~148 MiB, as fast (measured with
``MALLOC_ARENA_MAX=1``; the chunk data buffers' allocations are few and large, so the shared
arena's lock is not contended). Forcing big blocks to be unmapped on free instead bounds RSS
to the live buffers but costs ~25 % of ingest speed in page faults, so it is not done.

Only the CLI sets this, for its own process: a library caller's process (a trainer) keeps its
allocator as it is (``MALLOC_ARENA_MAX=1`` in its environment does the same there).
"""

from __future__ import annotations

import os
import sys

_M_ARENA_MAX = -8  # glibc's malloc.h

def one_malloc_arena() -> bool:
    """Ask glibc to serve every thread from one malloc arena (``mallopt(M_ARENA_MAX, 1)``),
    before any thread starts. False where it does not apply: not Linux, not glibc, or
    ``MALLOC_ARENA_MAX`` already chosen in the environment (the user's choice wins)."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(_M_ARENA_MAX, 1) == 1
