"""A real-HTTP S3 for tests: moto's threaded server on 127.0.0.1 and a fresh bucket.

moto checks ``If-None-Match`` / ``If-Match`` and then writes without holding a lock, so two
concurrent conditional PUTs can both pass the check. Real S3 decides them atomically. To make
moto behave like S3 under concurrency, :class:`AtomicMotoServer` serialises every mutating
request (PUT, POST, DELETE); reads stay concurrent. Every server started here counts the HTTP
requests it serves (:func:`http_requests`): request bounds are measured at the server.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

BUCKET = "casstore-test"
REGION = "us-east-1"
_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
}
_UNSET = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_served = [0]
_served_lock = threading.Lock()


def http_requests() -> int:
    """HTTP requests served so far by the moto servers of this process (all methods)."""
    with _served_lock:
        return _served[0]


def _counted(app: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        with _served_lock:
            _served[0] += 1
        return app(environ, start_response)

    return wrapped


def _serialise_writes(app: Callable[..., Any]) -> Callable[..., Any]:
    lock = threading.Lock()

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("REQUEST_METHOD") in ("PUT", "POST", "DELETE"):
            with lock:
                return list(app(environ, start_response))
        return app(environ, start_response)

    return wrapped


def _server_class(serialise_writes: bool) -> type:
    from moto.moto_server.werkzeug_app import create_backend_app
    from moto.server import ThreadedMotoServer
    from werkzeug.serving import make_server

    class AtomicMotoServer(ThreadedMotoServer):
        """ThreadedMotoServer that counts requests and (by default) decides mutating requests
        one at a time."""

        def _server_entry(self) -> None:
            # S3's app alone: moto's dispatcher works out the service of every request anew
            # (~3 of ~10 ms a request here), and this server only ever serves S3
            app = create_backend_app("s3")
            app = _counted(_serialise_writes(app) if serialise_writes else app)
            self._server = make_server(self._ip_address, self._port, app, True)
            self._server_ready_event.set()
            self._server.serve_forever()

    return AtomicMotoServer


@contextmanager
def dummy_credentials() -> Iterator[None]:
    """Dummy ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_DEFAULT_REGION`` in
    ``os.environ`` (so subprocesses inherit them; session tokens and profiles unset), the old
    values restored afterwards."""
    saved = {k: os.environ.get(k) for k in (*_ENV, *_UNSET)}
    os.environ.update(_ENV)
    for k in _UNSET:
        os.environ.pop(k, None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def moto_s3_server(bucket: str = BUCKET, *, serialise_writes: bool = True) -> Iterator[str]:
    """Start moto's S3 server on a free port, create ``bucket``, yield the endpoint URL, with
    :func:`dummy_credentials`."""
    import boto3

    with dummy_credentials():
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        cls = _server_class(serialise_writes)
        server = cls(ip_address="127.0.0.1", port=free_port(), verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        try:
            client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
            client.create_bucket(Bucket=bucket)
            yield endpoint
        finally:
            server.stop()


@contextmanager
def moto_s3_process(bucket: str = BUCKET, *, serialise_writes: bool = True) -> Iterator[str]:
    """:func:`moto_s3_server` in a process of its own, as a real server is: it then does not
    share the client's interpreter (and GIL), so the client's own work is not slowed by the
    server's. Yields the endpoint URL, with :func:`dummy_credentials`. The server's requests
    are not counted in :func:`http_requests`."""
    import subprocess
    import sys

    args = [sys.executable, "-m", "casstore.testing.s3", bucket]
    if not serialise_writes:
        args.append("--concurrent-writes")
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        endpoint = proc.stdout.readline().strip()
        if not endpoint.startswith("http://"):
            raise RuntimeError(f"moto's S3 server did not start (exit {proc.wait()})")
        with dummy_credentials():
            yield endpoint
    finally:
        proc.terminate()  # stdin closes with it: the server's process ends either way
        proc.wait()


if __name__ == "__main__":  # the server of moto_s3_process: runs until stdin closes
    import sys

    with moto_s3_server(sys.argv[1], serialise_writes="--concurrent-writes" not in sys.argv) \
            as _endpoint:
        print(_endpoint, flush=True)
        sys.stdin.read()
