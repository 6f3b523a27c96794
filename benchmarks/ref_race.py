"""Racing ref updates on every backend: attempted / landed / reflog entries, and the time.

    python -m benchmarks.ref_race [--procs 8] [--moves 12] [--backends local s3 azure gcs]

For each backend, a fresh store gets three versions; then ``--procs`` spawned processes each
try ``--moves`` times to move the ref ``race`` by compare-and-swap (read the ref, pick a
version, move it expecting the sequence number just read). A move that loses the race raises
ConflictError and counts as a conflict. The figures must satisfy: landed + conflicts =
attempted, reflog entries = landed, and the reflog is one unbroken chain (every entry's old
value is the previous entry's new value). S3 runs on moto, Azure on Azurite, GCS on
fake-gcs-server, all on 127.0.0.1; a backend whose server is not installed is skipped.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

VERSIONS = ["1.0.0", "1.0.1", "1.0.2"]


def _racer(url: str, moves: int, seed: int, out: Any) -> None:
    try:
        from casstore import ConflictError, Repository
        from casstore.repo.refs import RefValue

        repo = Repository(url)
        landed = conflicts = 0
        for i in range(moves):
            try:
                rec, _ = repo.refs.read("m", "race")
                target = repo.get_version("m", VERSIONS[(i + seed) % 3]).target
                expected = None if rec is None else rec.seq
                repo.refs.move("m", "race", RefValue.of(target), expected_seq=expected)
                landed += 1
            except ConflictError:
                conflicts += 1
        out.put((landed, conflicts))
    except BaseException as e:  # the parent reports it instead of waiting for a result
        out.put(f"{type(e).__name__}: {e}")
        raise


@contextmanager
def _store(backend: str, stack: ExitStack, tmp: Path) -> Iterator[str | None]:
    """A fresh store URL on ``backend`` (env set so child processes reach it), or None."""
    from casstore.testing import azure, gcs, s3

    if backend == "local":
        yield str(tmp / f"store-{uuid.uuid4().hex[:6]}")
    elif backend == "s3":
        os.environ["CASSTORE_S3_ENDPOINT_URL"] = stack.enter_context(s3.moto_s3_server())
        yield f"s3://{s3.BUCKET}/{uuid.uuid4().hex}"
    elif backend == "azure":
        if azure.missing_reason():
            yield None
            return
        conn = stack.enter_context(azure.azurite_server())
        os.environ["AZURE_STORAGE_CONNECTION_STRING"] = conn
        yield f"az://{azure.CONTAINER}/{uuid.uuid4().hex}"
    elif backend == "gcs":
        if gcs.missing_reason():
            yield None
            return
        os.environ.update(gcs.ENV)
        os.environ["STORAGE_EMULATOR_HOST"] = stack.enter_context(gcs.fake_gcs_server())
        yield f"gs://{gcs.BUCKET}/{uuid.uuid4().hex}"
    else:
        raise SystemExit(f"unknown backend {backend!r}")


def race(url: str, procs: int, moves: int, tmp: Path) -> dict[str, Any]:
    from casstore import Repository
    from casstore.cli.demo import write_safetensors

    repo = Repository(url)
    for i, version in enumerate(VERSIONS):
        f = tmp / f"v{i}.safetensors"
        write_safetensors(f, {"w": os.urandom(4096)}, {})
        repo.commit("m", [str(f)], version=version)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    workers = [ctx.Process(target=_racer, args=(url, moves, i, out)) for i in range(procs)]
    t0 = time.perf_counter()
    for p in workers:
        p.start()
    results = [out.get(timeout=600) for _ in workers]
    for p in workers:
        p.join(60)
    errors = [r for r in results if isinstance(r, str)]
    if errors:
        raise RuntimeError(f"a racing process failed: {errors[0]}")
    seconds = time.perf_counter() - t0
    log = sorted(repo.refs.reflog("m", "race"), key=lambda e: e.seq)
    chain = all(b.old == a.new for a, b in itertools.pairwise(log))
    landed = sum(r[0] for r in results)
    return {
        "attempted": procs * moves,
        "landed": landed,
        "conflicts": sum(r[1] for r in results),
        "reflog_entries": len(log),
        "unbroken_chain": chain and [e.seq for e in log] == list(range(len(log))),
        "seconds": round(seconds, 2),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=8)
    ap.add_argument("--moves", type=int, default=12, help="attempts per process")
    ap.add_argument("--backends", nargs="+", default=["local", "s3", "azure", "gcs"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d, ExitStack() as stack:
        for backend in args.backends:
            with _store(backend, stack, Path(d)) as url:
                rows[backend] = (
                    race(url, args.procs, args.moves, Path(d)) if url else {"skipped": True}
                )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{args.procs} processes x {args.moves} ref moves each")
    print(f"{'backend':8} {'attempted':>9} {'landed':>7} {'conflicts':>9} {'reflog':>7} "
          f"{'chain':>6} {'seconds':>8}")  # fmt: skip
    for backend, r in rows.items():
        if r.get("skipped"):
            print(f"{backend:8} skipped: server not installed")
            continue
        chain = str(r["unbroken_chain"])
        print(f"{backend:8} {r['attempted']:>9} {r['landed']:>7} {r['conflicts']:>9} "
              f"{r['reflog_entries']:>7} {chain:>6} {r['seconds']:>8}")  # fmt: skip


if __name__ == "__main__":
    main()
