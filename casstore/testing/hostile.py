"""Hostile inputs and the bounds every decoder must keep on them.

:func:`bounded` runs a decoder on one input in a forked child under an address-space limit
and a wall-clock limit (:data:`MEMORY_BOUND`, :data:`TIME_BOUND`) and says how it ended: a
clean casstore error is the only acceptable failure; a crash, a traceback of another type, a
hang or a memory blow-up is a defect. The builders make the inputs the issue-18 review used.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import pickle
import resource
import signal
import struct
import time
import traceback
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

MEMORY_BOUND = 256 << 20
"""Extra address space one hostile input may make a decoder use (beyond the process's own)."""
TIME_BOUND = 5.0
"""CPU seconds one hostile input may make a decoder take."""


@dataclass(frozen=True)
class Outcome:
    """How a decoder ended on one input: ``ok`` (accepted), ``refused`` (a CasstoreError),
    or ``defect`` (another exception, a signal, out of memory or out of time); ``seconds``
    is the CPU time it used."""

    kind: str
    seconds: float
    detail: str = ""


def _vm_size() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


_PRELOAD = ("numpy", "zstandard", "casstore.repository", "casstore.chunking")


def _child(conn: Connection, memory: int, seconds: float, fn: Callable[..., object],
           args: tuple[Any, ...]) -> None:  # pragma: no cover - runs in the child
    from casstore.errors import CasstoreError

    for name in _PRELOAD:  # their own start-up (e.g. OpenBLAS buffers) is not the input's
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    try:
        limit = _vm_size() + memory
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        cpu = int(seconds) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        fn(*args)
        msg = "ok:"
    except CasstoreError as e:
        msg = f"refused:{type(e).__name__}: {e}"[:2000]
    except MemoryError:
        msg = "defect:out of memory (over the bound)"
    except BaseException as e:  # the point is to report any other failure
        msg = f"defect:{type(e).__name__}: {e}\n{traceback.format_exc()}"[:4000]
    use = resource.getrusage(resource.RUSAGE_SELF)
    conn.send((use.ru_utime + use.ru_stime, msg))
    conn.close()


def bounded(fn: Callable[..., object], *args: Any, memory: int = MEMORY_BOUND,
            seconds: float = TIME_BOUND, wall: float | None = None) -> Outcome:
    """Run ``fn(*args)`` in a child allowed ``memory`` more bytes of address space and
    ``seconds`` of CPU time (what the input costs, whatever else loads the machine); ``wall``
    (default ``10 * seconds``) only catches a child that hangs without using CPU.

    The child comes from casstore's forkserver (:mod:`casstore.testing.children`): a clean
    single-threaded process, so no lock held by another thread of the caller is inherited
    (a plain fork of a process running an fsspec or server thread can deadlock). ``fn`` and
    ``args`` must pickle: a module-level function.
    """
    from casstore.testing.children import CONTEXT

    parent, child_end = CONTEXT.Pipe(duplex=False)
    t0 = time.monotonic()
    p = CONTEXT.Process(target=_child, args=(child_end, memory, seconds, fn, args))
    p.start()
    child_end.close()
    deadline = t0 + (wall if wall is not None else 10 * seconds)
    msg, cpu_s = None, 0.0
    while time.monotonic() < deadline:
        if parent.poll(0.01):
            try:
                cpu_s, msg = parent.recv()
            except EOFError:
                msg = None
            break
        if not p.is_alive() and not parent.poll(0.05):
            break
    if msg is None and p.is_alive():
        p.kill()
        p.join()
        return Outcome("defect", time.monotonic() - t0, "hung (no answer in time)")
    p.join()
    if msg is None:
        sig = -(p.exitcode or 0)
        why = f"over {seconds} s of CPU" if sig == signal.SIGXCPU else f"killed by signal {sig}"
        return Outcome("defect", cpu_s, why)
    kind, _, detail = msg.partition(":")
    if cpu_s > seconds:
        return Outcome("defect", cpu_s, f"took {cpu_s:.1f} s of CPU (bound {seconds} s)")
    return Outcome(kind, cpu_s, detail)


# -- pickle bombs (issue 18, defect 5) --------------------------------------------------------
def _u8str(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def list_copy_bomb(size: int = 1 << 20) -> bytes:
    """~``size`` bytes: a 100k-element list copied by ``builtins.list`` into an outer list
    once per 6 bytes (each copy is 100k pointers: ~130 GB if nothing stops it)."""
    head = b"\x80\x02]q\x00(" + b"K\x00" * 100_000 + b"e"  # inner list, memo 0
    head += b"cbuiltins\nlist\nq\x01]q\x02"  # list, memo 1; outer list, memo 2
    body = b"h\x01h\x00\x85Ra"  # outer.append(list(inner)) with outer on the stack
    n = max(1, (size - len(head)) // len(body))
    return head + body * n + b"."


def mark_bomb(size: int = 8 << 20) -> bytes:
    """``size`` bytes of MARK: each one a fresh stack."""
    return b"\x80\x02" + b"(" * size


def nested_dict_bomb(depth: int = 200_000) -> bytes:
    """``depth`` dicts, each the value of key ``a`` in the one around it."""
    return b"\x80\x02" + (b"}" + _u8str("a")) * depth + b"}" + b"s" * depth + b"."


def deep_tensors_bomb(depth: int = 20_000, tensors: int = 2_000) -> bytes:
    """Lists nested ``depth`` deep, with ``tensors`` tensor references at the bottom: naming
    each by its dotted path is depth x tensors work unless nesting is bounded."""
    rebuild = b"ctorch._utils\n_rebuild_tensor_v2\nq\x01"
    storage = (b"(" + _u8str("storage") + b"ctorch\nFloatStorage\n" + _u8str("0")
               + _u8str("cpu") + b"K\x01tQ")
    body = (rebuild + b"h\x01(" + storage
            + b"K\x00K\x01\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtRq\x02")  # memo 2
    return (b"\x80\x02" + body + b"0" + b"]" * depth + b"(" + b"h\x02" * tensors + b"e"
            + b"a" * (depth - 1) + b".")


def busy_bomb(size: int = 8 << 20) -> bytes:
    """``size`` bytes of push-None, pop: cheap opcodes, many of them (work, not memory)."""
    return b"\x80\x02" + b"N0" * (size // 2) + b"N."


def torch_zip(data_pkl: bytes, prefix: str = "archive") -> bytes:
    """A torch-style zip archive with ``data_pkl`` as its object."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", data_pkl)
        z.writestr(f"{prefix}/byteorder", b"little")
        z.writestr(f"{prefix}/version", b"3\n")
    return buf.getvalue()


def pickle_bombs() -> dict[str, bytes]:
    """The review's pickle bombs, as ``.pt`` files (torch zip archives)."""
    return {
        "list-copy-1MB.pt": torch_zip(list_copy_bomb()),
        "marks-8MB.pt": torch_zip(mark_bomb()),
        "nested-dicts-200k.pt": torch_zip(nested_dict_bomb()),
        "nested-dicts-60k.pt": torch_zip(nested_dict_bomb(60_000)),
        "deep-tensors.pt": torch_zip(deep_tensors_bomb()),
        "busy-8MB.pt": torch_zip(busy_bomb()),
        "legit-many-keys.pt": torch_zip(pickle.dumps({f"k{i}": i for i in range(100_000)},
                                                     protocol=2)),
    }


def safetensors_many(n: int = 150_000) -> bytes:
    """A safetensors file with ``n`` one-element float32 tensors."""
    import json

    header = {f"t{i}": {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]}
              for i in range(n)}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"\0" * (4 * n)
