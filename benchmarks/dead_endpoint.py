"""How long a command takes to report a dead S3 endpoint.

    python -m benchmarks.dead_endpoint [--json]

Two endpoints on this machine: a port nobody listens on (connection refused) and a server that
accepts connections and never answers (read timeout). Each runs ``casstore models`` in-process,
after one untimed run that pays for importing s3fs/aiobotocore. Before issue 15 every layer
retried on its own (botocore 5 tries x s3fs 5 tries x RetryingStore 5 tries): the same command
took 49 s against the refused port, and one bare ``get`` (without RetryingStore) 418 s against
the silent server.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def _hung_server() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        s.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(s.accept()[0])

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield s.getsockname()[1]
    finally:
        stop.set()
        t.join()
        for c in held:
            c.close()
        s.close()


def _time_models(port: int) -> dict[str, Any]:
    from casstore.cli import main

    os.environ.update(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y",
                      CASSTORE_S3_ENDPOINT_URL=f"http://127.0.0.1:{port}")
    err = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(err):
        code = main(["--store", f"s3://b/p{time.time_ns()}", "models"])
    return {"seconds": round(time.perf_counter() - t0, 2), "exit": code,
            "message": err.getvalue().strip()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from casstore.testing.s3 import free_port

    _time_models(free_port())  # imports
    out = {}
    with _hung_server() as hung:
        for name, port in (("refused", free_port()), ("hung", hung)):
            out[name] = _time_models(port)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for name, r in out.items():
            print(f"{name:<22} {r['seconds']:>7.2f} s  exit {r['exit']}  {r['message'][:100]}")


if __name__ == "__main__":
    main()
