"""Push and pull throughput to moto's S3 server, against a plain s3fs copy of the same files.

Both sides talk HTTP to the same local moto server in the same run, so the ratio is what
matters (moto itself is the bottleneck, not a real network). The server runs in a process of
its own, as a real one would: in the benchmark's own process it competed with its clients for
the GIL, charging every client-side cycle twice. casstore pushes the whole
series (it sends each distinct chunk once) and pulls it into a fresh local store; s3fs
uploads and downloads every file whole. Each side is timed three times, interleaved, and the
medians are compared (moto's own speed varies a lot between single runs). With
``--commands``, push, ``verify --read-data``, checkout and pull also run as ``casstore``
processes against the same server, and their peak RSS is reported. With ``--link``, 20 small
versions are pushed and pulled between local folders whose every call waits a 20 ms round
trip (:func:`over_a_link`): the round trips a transfer waits for, apart from any server.

    python -m benchmarks.push_pull --size-mb 128 --commands
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path


def over_a_link(work: Path, rtt: float = 0.02, versions: int = 20) -> dict:
    """Push and pull ``versions`` small versions (a 256 KiB adapter each) between local
    folders, the far one declared remote (as a bucket is) and every call to it made to wait
    ``rtt`` first, as a bucket one round trip away would (a batch call waits once, as its
    requests are in flight together): what the transfer's own sequence of round trips
    costs, with no server in the way."""
    import numpy as np

    from casstore import Repository
    from casstore.ops.transfer import transfer
    from casstore.store import open_store
    from casstore.testing.stores import CountingStore, FaultInjectingStore, RemoteLookingStore

    rng = np.random.default_rng(7)
    local = Repository(str(work / "link-src"))
    for _ in range(versions):
        data = rng.standard_normal(1 << 16, dtype=np.float32).tobytes()
        local.commit_sources("adapter", [("adapter.bin", len(data),
                                          lambda o, n, d=data: d[o : o + n])])

    def far(path: Path) -> tuple[Repository, CountingStore]:
        counting = CountingStore(open_store(str(path)))
        far = FaultInjectingStore(counting, delay_rate=1.0, delay=rtt)
        return Repository(RemoteLookingStore(far)), counting  # remote, as a bucket is

    remote, pushed = far(work / "link-remote")
    t0 = time.perf_counter()
    transfer(local.ctx, remote.ctx, local.versions("adapter"), refs=["current"])
    push_s = time.perf_counter() - t0
    source, pulled = far(work / "link-remote")
    t0 = time.perf_counter()
    transfer(source.ctx, Repository(str(work / "link-pulled")).ctx,
             source.versions("adapter"), refs=["current"])
    pull_s = time.perf_counter() - t0
    # the everyday cases: one new version pushed into the bucket (moving ``current`` to it),
    # then ``current`` rolled back there; medians of 3
    one_s, back_s = [], []
    for _ in range(3):
        data = rng.standard_normal(1 << 16, dtype=np.float32).tobytes()
        new = local.commit_sources("adapter", [("adapter.bin", len(data),
                                                lambda o, n, d=data: d[o : o + n])],
                                   ref="current").version
        remote, _ = far(work / "link-remote")
        t0 = time.perf_counter()
        transfer(local.ctx, remote.ctx, [new], refs=["current"])
        one_s.append(time.perf_counter() - t0)
        remote, _ = far(work / "link-remote")
        t0 = time.perf_counter()
        remote.rollback("adapter", to="1.0.0")
        back_s.append(time.perf_counter() - t0)
    one, back = statistics.median(one_s), statistics.median(back_s)
    return {"rtt_ms": rtt * 1e3, "versions": versions,
            "push_s": round(push_s, 3), "pull_s": round(pull_s, 3),
            "push_round_trips": round(push_s / rtt, 1), "pull_round_trips": round(pull_s / rtt, 1),
            "push_requests": pushed.requests, "pull_requests": pulled.requests,
            "push_one_s": round(one, 3), "push_one_round_trips": round(one / rtt, 1),
            "rollback_s": round(back, 3), "rollback_round_trips": round(back / rtt, 1)}


def run(size_mb: float = 32, workdir: Path | None = None, rounds: int = 3,
        commands: bool = False, link: bool = False) -> dict:
    import fsspec

    from benchmarks.series import SERIES_CORE, make_series
    from casstore import Repository
    from casstore.ops.transfer import transfer
    from casstore.store import open_store
    from casstore.testing.s3 import BUCKET, moto_s3_process
    from casstore.testing.stores import CountingStore

    work = Path(tempfile.mkdtemp(dir=workdir))
    try:
        series = make_series(work / "series", size_mb, SERIES_CORE)
        files = [Path(p) for p in series["files"].values()]
        logical = series["logical_bytes"]
        local = Repository(str(work / "local"))
        for p in files:
            local.commit("series", [p], change_log=p.name)
        with moto_s3_process(serialise_writes=False) as endpoint:
            os.environ["CASSTORE_S3_ENDPOINT_URL"] = endpoint
            fs = fsspec.filesystem("s3", client_kwargs={"endpoint_url": endpoint},
                                   skip_instance_cache=True)
            # moto runs in a process of its own (a server does not share its clients' GIL),
            # on the same two cores: single transfers vary by +-40 % between runs, so each
            # side is timed ``rounds`` times, interleaved (casstore push, pull, s3fs put,
            # get, then again), and the medians compared
            times: dict[str, list[float]] = {"push": [], "pull": [], "put": [], "get": []}
            for r in range(rounds):
                url = f"s3://{BUCKET}/{uuid.uuid4().hex}"
                counting = CountingStore(open_store(url))
                t0 = time.perf_counter()
                rep = transfer(local.ctx, Repository(counting).ctx, local.versions("series"),
                               refs=["current"])
                times["push"].append(time.perf_counter() - t0)
                sent = counting.bytes_written
                pulled = Repository(str(work / f"pulled{r}"))
                t0 = time.perf_counter()
                transfer(Repository(url).ctx, pulled.ctx, Repository(url).versions("series"))
                os.sync()
                times["pull"].append(time.perf_counter() - t0)
                plain = f"{BUCKET}/plain-{uuid.uuid4().hex}"
                t0 = time.perf_counter()
                fs.put([str(p) for p in files], [f"{plain}/{p.name}" for p in files])
                times["put"].append(time.perf_counter() - t0)
                down = work / f"down{r}"
                down.mkdir()
                t0 = time.perf_counter()
                fs.get([f"{plain}/{p.name}" for p in files], [str(down / p.name) for p in files])
                os.sync()
                times["get"].append(time.perf_counter() - t0)
                shutil.rmtree(down)
                shutil.rmtree(work / f"pulled{r}")
            push_s, pull_s = statistics.median(times["push"]), statistics.median(times["pull"])
            s3fs_put_s, s3fs_get_s = statistics.median(times["put"]), statistics.median(
                times["get"])
            # one version: straight from s3:// vs pull into a fresh store + local checkout,
            # interleaved, medians of ``rounds`` (each takes a tenth of a second)
            remote_read = Repository(url)
            last = remote_read.versions("series")[-1]
            both: dict[str, list[float]] = {"pulled": [], "s3": []}
            for r in range(rounds):
                t0 = time.perf_counter()
                one = Repository(str(work / f"one{r}"))
                transfer(remote_read.ctx, one.ctx, [last])
                one.checkout("series", last.version, work / f"co-pulled{r}")
                os.sync()
                both["pulled"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                Repository(url).checkout("series", last.version, work / f"co-s3{r}")
                os.sync()
                both["s3"].append(time.perf_counter() - t0)
            pull_checkout_s = statistics.median(both["pulled"])
            s3_checkout_s = statistics.median(both["s3"])
            # the floor of casstore's request pattern on this server: s3fs's own async batch
            # GET (cat) and PUT (pipe) of the very chunk objects casstore moved, nothing else
            prefix = f"{url.removeprefix('s3://')}/chunks/"
            objects = [p for p in fs.find(prefix)]
            t0 = time.perf_counter()
            blobs = fs.cat(objects)
            s3fs_cat_chunks_s = time.perf_counter() - t0
            again = f"{BUCKET}/again-{uuid.uuid4().hex}"
            t0 = time.perf_counter()
            fs.pipe({f"{again}/{i}": b for i, b in enumerate(blobs.values())})
            s3fs_pipe_chunks_s = time.perf_counter() - t0
            cli = _cli_commands(work, endpoint, last.version) if commands else None
        return {
            "logical_bytes": logical,
            "casstore_bytes_sent": sent,
            "chunks_sent": rep.chunks_sent,
            "push_s": round(push_s, 3), "pull_s": round(pull_s, 3),
            "s3fs_put_s": round(s3fs_put_s, 3), "s3fs_get_s": round(s3fs_get_s, 3),
            "push_MBps": round(logical / push_s / 1e6, 1),
            "pull_MBps": round(logical / pull_s / 1e6, 1),
            "s3fs_put_MBps": round(logical / s3fs_put_s / 1e6, 1),
            "s3fs_get_MBps": round(logical / s3fs_get_s / 1e6, 1),
            "push_vs_s3fs": round(s3fs_put_s / push_s, 2),
            "pull_vs_s3fs": round(s3fs_get_s / pull_s, 2),
            "chunk_objects": len(objects),
            "s3fs_cat_chunk_objects_s": round(s3fs_cat_chunks_s, 3),
            "s3fs_pipe_chunk_objects_s": round(s3fs_pipe_chunks_s, 3),
            "s3_checkout_s": round(s3_checkout_s, 3),
            "pull_checkout_s": round(pull_checkout_s, 3),
            "s3_checkout_vs_pull": round(s3_checkout_s / pull_checkout_s, 2),
            "rounds": rounds,
            "round_seconds": {k: [round(x, 3) for x in v]
                              for k, v in {**times, **{f"checkout {k}": v
                                                       for k, v in both.items()}}.items()},
            **({"s3_commands": cli} if cli else {}),
            **({"link": over_a_link(work)} if link else {}),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _cli_commands(work: Path, endpoint: str, version: str) -> dict[str, dict]:
    """Peak RSS and seconds of the S3 commands as a user runs them (``casstore`` processes,
    from bytecode, against the same moto server): push the series to a fresh prefix,
    ``verify --read-data`` and ``checkout`` there, pull it into a fresh local store."""
    from benchmarks.peers import installed_env, run_measured
    from casstore.testing.s3 import BUCKET

    env = installed_env(work)
    env["CASSTORE_S3_ENDPOINT_URL"] = endpoint
    url = f"s3://{BUCKET}/cli-{uuid.uuid4().hex}"

    def cas(store: str | Path, *args: str) -> list[str]:
        return [sys.executable, "-m", "casstore", "--store", str(store), *args]

    runs = {
        "push to s3://": cas(work / "local", "push", url, "series", "--all"),
        "verify --read-data on s3://": cas(url, "verify", "--read-data"),
        "checkout from s3://": cas(url, "checkout", "series", version, "-o",
                                   str(work / "cli-co")),
        "pull from s3://": cas(work / "cli-pulled", "pull", url, "series", "--all"),
    }
    out = {}
    for name, cmd in runs.items():
        m = run_measured(cmd, env=env)
        out[name] = {"seconds": round(m.seconds, 3), "peak_rss": m.max_rss}
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size-mb", type=float, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--commands", action="store_true",
                    help="also run the S3 commands as CLI processes and report their peak RSS")
    ap.add_argument("--link", action="store_true",
                    help="also push and pull 20 small versions over a 20 ms round trip")
    a = ap.parse_args()
    print(json.dumps(run(a.size_mb, rounds=a.rounds, commands=a.commands, link=a.link),
                     indent=2))
