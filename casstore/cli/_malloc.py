"""The allocator and thread settings of a ``casstore`` process that moves chunk data.

A commit's writer threads each allocate and free chunk-sized buffers (read windows, split
streams, compressed streams, decoded delta bases). glibc gives every thread its own arena and
keeps what a thread freed for that thread's next request, so the process's peak RSS grows well
past the buffers alive at once: committing the benchmark's 512 MiB full-finetune checkpoint
peaked at ~195 MiB with ~112 MiB of live buffers. One arena shared by all threads lets any
thread reuse what another freed: the same commits peak at ~148 MiB, as fast (measured with
``MALLOC_ARENA_MAX=1``; the chunk data buffers' allocations are few and large, so the shared
arena's lock is not contended). Forcing big blocks to be unmapped on free instead bounds RSS
to the live buffers but costs ~25 % of ingest speed in page faults, so it is not done.

The arena's thresholds are fixed too. glibc raises its mmap threshold to the size of the
last large block freed (up to 32 MiB) and trims the heap only when twice that is free at its
top, so which chunk buffers come from the heap, and how much freed memory stays resident,
depends on the order of a process's first allocations: the delta commit of the benchmark's
fine-tune peaked at 109-139 MiB over 12 runs of the same command. Blocks up to 32 MiB always
from the heap (reused, no page faults: every chunk buffer fits) and the heap trimmed once
2 MiB is free at its top: 119-126 MiB over 12 runs, as fast (0.83-0.99 s vs 0.72-0.98 s).
Smaller mmap thresholds bound RSS further (16 MiB: 105-111 MiB over the series) but fault in
every 16 MiB buffer anew (+12 % series ingest time), so they are not used.

numpy's bundled OpenBLAS starts a thread per core when numpy is imported, and that thread
spins for a while on a core casstore's own threads need (casstore never calls BLAS): with it,
``python -c "import numpy, time; time.sleep(0.3)"`` used 0.16 s of CPU here, without it
0.05 s; a checkout of the benchmark's 512 MiB fine-tune 0.63-0.70 s of user CPU vs
0.54-0.65 s (four runs each, interleaved). So a bulk command asks for one BLAS thread.

Only the CLI sets these, for its own process: a library caller's process (a trainer) keeps its
allocator and BLAS threads as they are (``MALLOC_ARENA_MAX=1`` and ``OPENBLAS_NUM_THREADS=1`` in
its environment, before numpy is imported, do the same there).
"""

from __future__ import annotations

import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # glibc's malloc.h
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 2 << 20


def one_malloc_arena() -> bool:
    """Ask glibc to serve every thread from one malloc arena (``mallopt(M_ARENA_MAX, 1)``)
    with fixed mmap and trim thresholds, before any thread starts. False where it does not
    apply: not Linux, not glibc, or the user chose (``MALLOC_ARENA_MAX`` in the environment,
    or any other ``MALLOC_*`` setting or ``GLIBC_TUNABLES`` for the thresholds: the user's
    choice wins)."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if mallopt(_M_ARENA_MAX, 1) != 1:
        return False
    if "GLIBC_TUNABLES" not in os.environ and not any(k.startswith("MALLOC_") and
                                                      k.endswith("_") for k in os.environ):
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    return True


_BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")


def one_blas_thread() -> bool:
    """Ask numpy's OpenBLAS, before numpy is imported, for no threads of its own. False if
    numpy is already imported or the user chose (any of its thread-count variables set)."""
    if "numpy" in sys.modules or any(k in os.environ for k in _BLAS_THREADS):
        return False
    from casstore._own_env import set_for_self

    set_for_self("OPENBLAS_NUM_THREADS", "1")  # not passed on to hooks and checks
    return True
