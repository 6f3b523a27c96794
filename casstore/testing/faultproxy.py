"""A fault-injecting HTTP proxy to put between a client (s3fs) and a server (moto).

Each request, with probability ``rate``, suffers one fault chosen by a seeded RNG:

* ``refuse``    the connection is closed before a byte of answer (a refused/lost request);
* ``reset``     the connection is aborted (TCP RST) after the request reached the server;
* ``slow``      the answer is delayed by ``slow_seconds``;
* ``truncate``  the headers promise the whole body, half of it is sent, then the connection
                closes;
* ``duplicate`` the request is sent to the server twice (a retry that landed twice); the
                client sees the second answer;
* ``stale``     the connection is aborted once the request's headers are read, before its
                body: a pooled keep-alive connection the server had closed as it was reused
                (with a body larger than the sockets' buffers, the client fails writing it);
                nothing reaches the server.

:meth:`FaultProxy.outage` closes the listening socket for a while (connections refused) and
drops the connections already open, as a real outage does: a client's pooled keep-alive
connections (s3fs instances, and so their pools, are shared per arguments) must not reach the
upstream either. Without faults the proxy is transparent (a HEAD keeps its Content-Length).
The proxy runs its own event loop in a daemon thread; ``counts`` says what was injected.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp

FAULTS = ("refuse", "reset", "slow", "truncate", "duplicate", "stale")
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host",
        "proxy-connection", "te", "trailer", "upgrade", "expect"}


class FaultProxy:
    """``http://127.0.0.1:<port>`` forwarding to ``upstream`` with injected faults."""

    def __init__(self, upstream: str, *, rate: float = 0.1, seed: int = 0,
                 faults: tuple[str, ...] = FAULTS, slow_seconds: float = 1.5,
                 max_faults: int | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.rate, self.faults, self.slow_seconds = rate, faults, slow_seconds
        self.max_faults = max_faults  # None: no limit
        self.rng = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self.requests = 0
        self.enabled = True
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._open: set[asyncio.StreamWriter] = set()  # live client connections
        self._session: aiohttp.ClientSession | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="casstore-faultproxy")
        self._thread.start()
        self._call(self._start())

    # -- control -----------------------------------------------------------------------------
    def _call(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        await self._listen()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port,
                                                  reuse_address=True)

    async def _unlisten(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        # Server.close() leaves accepted connections open (Python < 3.13): a client's pooled
        # keep-alive connection would still reach the upstream. A real outage drops them too.
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    @contextmanager
    def outage(self) -> Iterator[None]:
        """Connections are refused (nothing listens) inside the block."""
        self._call(self._unlisten())
        self.counts["outage"] += 1
        try:
            yield
        finally:
            self._call(self._listen())

    def close(self) -> None:
        async def stop() -> None:
            await self._unlisten()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._session is not None:
                await self._session.close()

        self._call(stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- serving -----------------------------------------------------------------------------
    def _pick(self) -> str | None:
        self.requests += 1
        if not self.enabled or self.rng.random() >= self.rate:
            return None
        if self.max_faults is not None and sum(self.counts.values()) >= self.max_faults:
            return None
        fault = self.rng.choice(self.faults)
        self.counts[fault] += 1
        return fault

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, aiohttp.ClientError,
                asyncio.TimeoutError, asyncio.CancelledError, ValueError):
            pass
        finally:
            self._open.discard(writer)
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        line = await reader.readline()
        if not line:
            return False
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers: list[tuple[str, str]] = []
        while True:
            h = await reader.readline()
            if h in (b"\r\n", b"\n", b""):
                break
            k, _, v = h.decode("latin-1").partition(":")
            headers.append((k.strip(), v.strip()))
        lower = {k.lower(): v for k, v in headers}
        if lower.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        fault = self._pick()
        if fault == "stale":
            writer.transport.abort()
            return False
        body = b""
        if "content-length" in lower:
            body = await reader.readexactly(int(lower["content-length"]))
        elif lower.get("transfer-encoding", "").lower() == "chunked":
            body = await _read_chunked(reader)
        if fault == "refuse":
            writer.transport.abort()
            return False
        fwd = [(k, v) for k, v in headers if k.lower() not in _HOP]
        fwd.append(("Host", lower.get("host", "")))
        if fault == "duplicate":
            await self._forward(method, target, fwd, body)
        status, reason, rheaders, rbody = await self._forward(method, target, fwd, body)
        if fault == "reset":
            writer.transport.abort()
            return False
        if fault == "slow":
            await asyncio.sleep(self.slow_seconds)
        out = [f"HTTP/1.1 {status} {reason}\r\n"]
        out += [f"{k}: {v}\r\n" for k, v in rheaders if k.lower() not in _HOP]
        length = len(rbody)
        if method == "HEAD":  # no body: the length is the object's, as upstream says
            length = int(next((v for k, v in rheaders if k.lower() == "content-length"), 0))
        out.append(f"Content-Length: {length}\r\n\r\n")
        writer.write("".join(out).encode("latin-1"))
        if fault == "truncate" and len(rbody) > 1:
            writer.write(rbody[: len(rbody) // 2])
            await writer.drain()
            writer.transport.abort()
            return False
        writer.write(rbody)
        await writer.drain()
        return lower.get("connection", "").lower() != "close"

    async def _forward(self, method: str, target: str, headers: list[tuple[str, str]],
                       body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        assert self._session is not None
        async with self._session.request(method, self.upstream + target, headers=headers,
                                         data=body or None, allow_redirects=False,
                                         skip_auto_headers=("Content-Type",)) as r:
            data = await r.read()
            return r.status, r.reason or "", list(r.headers.items()), data


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readline()).split(b";")[0], 16)
        if size == 0:
            await reader.readline()
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readline()
