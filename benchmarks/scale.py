"""Metadata at scale (issue 12): requests and time of the everyday commands against history length.

One model grows to each N (10, 100, 1,000, 10,000 versions); at each N every operation runs
once in a fresh ``Repository`` (nothing cached, as a new process) over a counting store:
store calls (``CountingStore``) and, on S3, the HTTP requests moto's server served. Then:
100 models x 100 versions (20 x 10 on S3: models, query over all, stats), a rollback to a
10,000-chunk target, GC planning with 2,000 reflog entries outside the window, and the peak
RSS of ``casstore log --all --json`` at the largest N (local).

    python -m benchmarks.scale                      # local N up to 10,000; S3 up to 1,000
    python -m benchmarks.scale --sections many_models --stores local  # 100 x 100 only
    python -m benchmarks.scale --quick              # smoke: N = 10, 30 (S3: 10), seconds
    python -m benchmarks.scale --n 10 100 --s3-max 100 --workdir /dev/shm

Figures are per operation: ``calls`` (store calls), ``http`` (S3 requests), ``ms``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def _commit(repo: Any, model: str, i: int, **options: Any) -> str:
    data = b"%d;" % i * 30

    def read_at(offset: int, n: int) -> bytes:
        return data[offset : offset + n]

    metrics = {"accuracy": (i * 7919 % 1000) / 1000}
    res = repo.commit_sources(model, [("w.bin", len(data), read_at)], metrics=metrics, **options)
    return res.version.version


class Meter:
    def __init__(self, counting: Any, s3: bool) -> None:
        self.counting, self.s3 = counting, s3

    def run(self, fn: Callable[..., Any], *args: Any) -> dict[str, Any]:
        from casstore.testing.s3 import http_requests

        self.counting.reset()
        h0 = http_requests()
        t0 = time.perf_counter()
        fn(*args)
        ms = (time.perf_counter() - t0) * 1000
        out = {"calls": self.counting.requests, "ms": round(ms, 1)}
        if self.s3:
            out["http"] = http_requests() - h0
        return out


@contextlib.contextmanager
def _stores(kind: str, workdir: Path) -> Iterator[tuple[str, bool]]:
    if kind == "local":
        with tempfile.TemporaryDirectory(dir=workdir) as d:
            yield str(Path(d) / "store"), False
    else:
        import uuid

        from casstore.testing.s3 import BUCKET, moto_s3_server

        with moto_s3_server() as endpoint:
            os.environ["CASSTORE_S3_ENDPOINT_URL"] = endpoint
            try:
                yield f"s3://{BUCKET}/{uuid.uuid4().hex}", True
            finally:
                os.environ.pop("CASSTORE_S3_ENDPOINT_URL", None)


def _open(url: str) -> tuple[Any, Any]:
    from casstore import Repository
    from casstore.store import open_store
    from casstore.testing.stores import CountingStore

    counting = CountingStore(open_store(url))
    return Repository(counting), counting


def one_model(kind: str, ns: list[int], workdir: Path) -> dict[str, Any]:
    """Grow one model through ``ns``; measure every operation at each N."""
    from casstore import Repository
    from casstore.ops.gc import GarbageCollector
    from casstore.ops.retention import RetentionPolicy
    from casstore.ops.transfer import transfer
    from casstore.repo.query import Query, parse_order

    rows: dict[str, dict[str, Any]] = {}
    build: list[dict[str, Any]] = []
    source = Repository(tempfile.mkdtemp(prefix="scale-source-", dir=workdir))
    with _stores(kind, workdir) as (url, s3):
        writer, _ = _open(url)
        done = 0
        for n in ns:
            t0 = time.perf_counter()
            while done < n:
                _commit(writer, "m", done)
                done += 1
                if done == 1:
                    writer.tag("m", "1.0.0", "stable")
            build.append({"to": n, "s_per_1000": round((time.perf_counter() - t0) * 1000
                                                       / max(1, n - (build[-1]["to"] if build
                                                                     else 0)), 2)})
            ops: dict[str, Callable[[Any], Any]] = {
                "commit": lambda r, i=done: _commit(r, "m", i),
                "show latest": lambda r: r.get_version("m", "latest"),
                "show @current": lambda r: r.get_version("m", "@current"),
                "log -n 20": lambda r: r.log("m", 20),
                "log --all": lambda r: r.log("m"),
                "query --order-by --limit 5": lambda r: r.query(
                    "m", Query(order=parse_order("accuracy"), limit=5)),
                "tag": lambda r, v=("1.0.1" if n > 1 else "1.0.0"): r.tag("m", v, "reviewed"),
                "rollback --to": lambda r: r.rollback("m", to="1.0.0"),
                "promote latest": lambda r: r.promote("m", "latest"),
                "stats": lambda r: r.stats(),
                "models": lambda r: r.models(),
                "gc --dry-run": lambda r: GarbageCollector(r.ctx).plan(
                    RetentionPolicy(keep_last=10)),
                # a version made elsewhere, pushed in (it reads the newest manifests here)
                "push one version in": lambda r, n=n: transfer(source.ctx, r.ctx, [
                    source.get_version("m", _commit(source, "m", 10**6 + n,
                                                    version=f"9.{n}.0"))]),
            }
            for name, op in ops.items():
                repo, counting = _open(url)
                rows.setdefault(name, {})[str(n)] = Meter(counting, s3).run(op, repo)
            done += 1  # the measured commit
        rss = None if s3 else log_rss(url, done)
    return {"ops": rows, "build": build, "log_rss": rss}


def many_models(kind: str, models: int, versions: int, workdir: Path) -> dict[str, Any]:
    from casstore.repo.query import Query, parse_order

    with _stores(kind, workdir) as (url, s3):
        writer, _ = _open(url)
        t0 = time.perf_counter()
        for i in range(versions):
            for m in range(models):
                _commit(writer, f"model-{m:03d}", i * models + m)
        built = time.perf_counter() - t0
        out: dict[str, Any] = {"models": models, "versions": versions,
                               "build_s": round(built, 1)}
        for name, op in {
            "list models": lambda r: r.models(),
            "query all --where --limit 10": lambda r: r.query(None, Query(
                order=parse_order("accuracy"), limit=10)),
            "log -n 20 (one model)": lambda r: r.log(f"model-{models // 2:03d}", 20),
            "stats": lambda r: r.stats(),
            "commit": lambda r: _commit(r, f"model-{models // 2:03d}", 10**6),
        }.items():
            repo, counting = _open(url)
            out[name] = Meter(counting, s3).run(op, repo)
    return out


def big_target(kind: str, chunks: int, workdir: Path) -> dict[str, Any]:
    """Rollback and promote to a version of ``chunks`` chunk objects (8 KiB each)."""
    from casstore.repo.config import StoreConfig

    with _stores(kind, workdir) as (url, s3):
        writer, _ = _open(url)
        writer.init(StoreConfig(chunker="fixed/size=8192"))
        _commit(writer, "m", 0)
        data = os.urandom(chunks * 8192)
        writer.commit_sources("m", [("big.bin", len(data), lambda o, n: data[o : o + n])])
        _commit(writer, "m", 2)
        out = {"chunks": chunks}
        for name, op in {
            "rollback --to big": lambda r: r.rollback("m", to="1.0.1"),
            "rollback --to small": lambda r: r.rollback("m", to="1.0.0"),
            "promote big": lambda r: r.promote("m", "1.0.1"),
            "promote big --verify": lambda r: r.promote("m", "1.0.1", verify=True),
        }.items():
            repo, counting = _open(url)
            out[name] = Meter(counting, s3).run(op, repo)
    return out


def reflog_window(moves: int, workdir: Path) -> dict[str, Any]:
    """GC planning after ``moves`` ref moves, all outside the retention window."""
    from casstore.ops.gc import GarbageCollector
    from casstore.ops.retention import RetentionPolicy

    with _stores("local", workdir) as (url, _):
        writer, _ = _open(url)
        _commit(writer, "m", 0)
        _commit(writer, "m", 1)
        values = [_value(writer, "1.0.0"), _value(writer, "1.0.1")]
        for i in range(moves):
            writer.refs.move("m", "current", values[i % 2], reason="bench")
        repo, counting = _open(url)
        reads: list[str] = []
        inner_get = counting.get

        def get(key: str, start: int | None = None, end: int | None = None) -> bytes:
            reads.append(key)
            return inner_get(key, start, end)

        counting.get = get  # type: ignore[method-assign]
        m = Meter(counting, False).run(GarbageCollector(repo.ctx).plan,
                                       RetentionPolicy(keep_last=1, keep_reflog_seconds=0))
        m["reflog_entries"] = moves
        m["reflog_entries_read"] = sum("/reflog/" in k for k in reads)
        return m


def _value(repo: Any, semver: str) -> Any:
    from casstore.repo.refs import RefValue

    return RefValue.of(repo.get_version("m", semver).target)


def log_rss(url: str, versions: int) -> dict[str, Any]:
    """Peak RSS of ``casstore log --all --json`` over ``versions`` versions (its own process)."""
    code = ("import sys,subprocess,resource;"
            "p=subprocess.run([sys.executable,'-m','casstore','log','m','--all','--json',"
            "'--store',sys.argv[1]],stdout=subprocess.DEVNULL,check=True);"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True,
                       check=True)
    return {"versions": versions, "peak_rss_mb": round(int(p.stdout) / 1024, 1),
            "s": round(time.perf_counter() - t0, 2)}


def table(result: dict[str, Any]) -> str:
    """Markdown: operation x N -> calls / S3 requests / ms, per store."""
    lines = []
    for kind, r in result["one_model"].items():
        ns = [str(b["to"]) for b in r["build"]]
        lines.append(f"\n{kind}: store calls / " + ("S3 HTTP requests / " if kind == "s3" else
                                                  "") + "ms, by number of versions N")
        lines.append("| operation | " + " | ".join(f"N={n}" for n in ns) + " |")
        lines.append("|---|" + "---|" * len(ns))
        for op, by_n in r["ops"].items():
            cells = []
            for n in ns:
                c = by_n[n]
                cells.append(f"{c['calls']}" + (f" / {c['http']}" if "http" in c else "")
                             + f" / {c['ms']:.0f}")
            lines.append(f"| {op} | " + " | ".join(cells) + " |")
        lines.append("| build: s per 1,000 commits | " + " | ".join(
            f"{b['s_per_1000']}" for b in r["build"]) + " |")
    return "\n".join(lines)


SECTIONS = ("one_model", "big_target", "reflog_window", "many_models")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CI smoke: small N, seconds")
    ap.add_argument("--n", type=int, nargs="+", default=[10, 100, 1000, 10000])
    ap.add_argument("--s3-max", type=int, default=1000, help="largest N measured on S3")
    ap.add_argument("--models", type=int, nargs=2, default=[100, 100], metavar=("M", "V"))
    ap.add_argument("--chunks", type=int, default=10000, help="chunks of the big target")
    ap.add_argument("--moves", type=int, default=2000, help="reflog entries outside GC window")
    ap.add_argument("--stores", nargs="+", choices=["local", "s3"], default=["local", "s3"])
    ap.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    ap.add_argument("--s3-models", type=int, nargs=2, default=[20, 10], metavar=("M", "V"),
                    help="models x versions on S3 (each S3 commit is ~15 requests)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None, help="write the JSON result here")
    a = ap.parse_args(argv)
    if a.quick:
        a.n, a.s3_max, a.models, a.chunks, a.moves = [10, 30], 10, [3, 3], 100, 20
    if a.quick:
        a.s3_models = [3, 3]
    work = a.workdir or Path(tempfile.gettempdir())
    result: dict[str, Any] = {"one_model": {}, "argv": sys.argv[1:]}

    def save() -> None:  # after every section: a long run interrupted keeps what it measured
        result["self_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                           / 1024, 1)
        if a.out:
            a.out.write_text(json.dumps(result, indent=2))

    for kind in a.stores if "one_model" in a.sections else ():
        ns = [n for n in a.n if kind == "local" or n <= a.s3_max]
        if ns:
            result["one_model"][kind] = one_model(kind, ns, work)
            save()
    if "big_target" in a.sections:
        result["big_target"] = {k: big_target(k, a.chunks, work) for k in a.stores}
        save()
    if "reflog_window" in a.sections:
        result["reflog_window"] = reflog_window(a.moves, work)
        save()
    result["log_rss"] = result["one_model"].get("local", {}).get("log_rss")
    if "many_models" in a.sections:
        result["many_models"] = {}
        for k in a.stores:
            result["many_models"][k] = many_models(k, *(a.models if k == "local" else
                                                        a.s3_models), work)
            save()
    save()
    print(json.dumps(result, indent=2))
    print(table(result))
    return result


if __name__ == "__main__":
    main()
