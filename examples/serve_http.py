"""A tiny HTTP inference server that follows a casstore ref (standard library only + torch).

    casstore promote demo 1.0.2 --ref production      # what this server serves by default
    python examples/serve_http.py --store .casstore --model demo --port 8080
    curl 'localhost:8080/predict?key=user-42'     # {"version": "1.0.2", "output": ...}
    casstore promote demo 1.0.3 --ref production --wait       # returns once this server has it
    casstore rollback demo --ref production --previous-stable --wait

It follows ``production`` unless ``--ref`` names another ref: commits, training checkpoints
and moves of ``current`` never change what it serves. Until the ref exists it answers 503.

The "model" is the version's state dict; a prediction is the sum of one tensor, enough to see
which weights answered. The health check refuses weights holding NaN or Inf: such a version
is never served, the old one stays, and ``casstore status demo`` shows the failure.

Every request is counted in the follower's live figures (requests, errors, latency), which
``casstore watch`` judges to roll back automatically:

    casstore watch demo --ref production --policy watch.json --interval 10s

For drills, ``--inject-fault 1.0.3=0.2`` makes one request in five that 1.0.3 answers fail
with HTTP 500 (a fault in the handler that only that version shows).
"""

from __future__ import annotations

import argparse
import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from casstore.errors import CasstoreError
from casstore.serving import Follower


def finite(state_dict: dict[str, Any], version: Any) -> bool:
    return all(bool(t.isfinite().all()) for t in state_dict.values() if t.is_floating_point())


class InjectedFault(RuntimeError):
    """A failure the drill asked for (``--inject-fault``)."""


class Faults:
    """``VERSION=FRACTION`` drills: that fraction of the requests a version answers fails,
    spread evenly (request n fails when floor(n * fraction) steps up)."""

    def __init__(self, specs: list[str]) -> None:
        self.rate: dict[str, float] = {}
        for spec in specs:
            version, _, fraction = spec.partition("=")
            self.rate[version] = float(fraction)
        self.count: dict[str, int] = {}
        self.lock = threading.Lock()

    def maybe_fail(self, version: str) -> None:
        rate = self.rate.get(version)
        if not rate:
            return
        with self.lock:
            n = self.count[version] = self.count.get(version, 0) + 1
        if math.floor(n * rate) != math.floor((n - 1) * rate):
            raise InjectedFault(f"injected fault in {version}")


def make_handler(follower: Follower, faults: Faults | None = None) -> type[BaseHTTPRequestHandler]:
    faults = faults or Faults([])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path == "/health":
                return self._send(200, {"id": follower.id, "versions": follower.versions})
            if url.path != "/predict":
                return self._send(404, {"error": "unknown path"})
            key = parse_qs(url.query).get("key", [None])[0]
            try:
                with follower.request(key) as served:  # counted in the live figures
                    faults.maybe_fail(served.version.version)
                    first = sorted(served.state_dict)[0]
                    out = float(served.state_dict[first].double().sum())
            except InjectedFault as e:
                return self._send(500, {"error": str(e), "version": served.version.version})
            except CasstoreError as e:  # nothing healthy loaded yet
                return self._send(503, {"error": str(e), "last_error": follower.ack.last_error})
            self._send(
                200,
                {
                    "version": served.version.version,
                    "key": key,
                    "output": out if math.isfinite(out) else None,
                },
            )

        def _send(self, code: int, doc: dict[str, Any]) -> None:
            body = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:  # quiet
            pass

    return Handler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--store", default=".casstore")
    ap.add_argument("--model", required=True)
    ap.add_argument("--ref", default="production",
                    help="the ref to serve (default production; set it with casstore promote "
                    "MODEL VERSION --ref production)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--interval", type=float, default=0.5, help="seconds between ref polls")
    ap.add_argument("--heartbeat", type=float, help="seconds between acknowledgements "
                    "(they carry the live figures; default max(interval, 1))")
    ap.add_argument("--live-slice", type=float, default=5.0,
                    help="seconds per slice of the live figures (default 5)")
    ap.add_argument("--live-retain", type=float, default=120.0,
                    help="seconds of live figures each acknowledgement carries (default 120)")
    ap.add_argument("--inject-fault", action="append", default=[], metavar="VERSION=FRACTION",
                    help="drill: make that fraction of VERSION's requests fail with 500")
    a = ap.parse_args()
    follower = Follower(a.store, a.model, a.ref, health_check=finite, interval=a.interval,
                        heartbeat=a.heartbeat, live_slice=a.live_slice, live_retain=a.live_retain)
    follower.start()  # until the ref exists, /predict answers 503 naming it
    server = ThreadingHTTPServer(
        (a.host, a.port), make_handler(follower, Faults(a.inject_fault))
    )
    print(json.dumps({"listening": server.server_address[1], "follower": follower.id}), flush=True)
    try:
        server.serve_forever()
    finally:
        follower.stop()


if __name__ == "__main__":
    main()
