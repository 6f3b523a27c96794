"""``python -m benchmarks``: every registered section in one run, then ``results.json``,
``report.md`` (headline table, PASS/MISS target lines, one part per section) and PNG plots.

    python -m benchmarks                      # default: 512 MiB base model, ~3.5 GB series
    python -m benchmarks --quick              # a few MB, for CI (correctness, not timing)
    python -m benchmarks --size-mb 2048 --out /tmp/bench --only peers rss_2g
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import plots, report
from benchmarks.registry import Context, load_sections, run_section

DEFAULT_SIZE_MB = 512
QUICK_SIZE_MB = 4


def _machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=float, help=f"base model MiB (default {DEFAULT_SIZE_MB}; "
                    f"the series is ~6.5x that)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"), help="output folder")
    ap.add_argument("--quick", action="store_true",
                    help=f"tiny sizes ({QUICK_SIZE_MB} MiB base model) for a smoke test")
    ap.add_argument("--cold", action="store_true",
                    help="drop the page cache before every timed phase (root only)")
    ap.add_argument("--only", nargs="+", metavar="SECTION", help="run only these sections")
    ap.add_argument("--skip", nargs="+", metavar="SECTION", default=[], help="skip sections")
    ap.add_argument("--workdir", type=Path, help="scratch folder (default: a temp dir, removed)")
    ap.add_argument("--list", action="store_true", help="list the sections and exit")
    ap.add_argument("--training-dir", type=Path,
                    help="reuse the checkpoints `python -m benchmarks.training DIR` wrote "
                    "(DIR/info.json) instead of training again")
    a = ap.parse_args(argv)
    sections = load_sections()
    if a.list:
        for s in sections.values():
            print(f"{s.name:10} {s.title}")
        return {}
    chosen = [n for n in sections if (not a.only or n in a.only) and n not in a.skip]
    unknown = (set(a.only or []) | set(a.skip)) - set(sections)
    if unknown:
        ap.error(f"unknown sections: {', '.join(sorted(unknown))}")
    size = a.size_mb or (QUICK_SIZE_MB if a.quick else DEFAULT_SIZE_MB)
    a.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="casstore-bench-", dir=a.workdir))

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    ctx = Context(size_mb=size, quick=a.quick, out=a.out, work=work, cold=a.cold, log=log,
                  training_dir=a.training_dir)
    doc: dict = {
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": _machine(),
        "options": {"size_mb": size, "quick": a.quick, "cold": a.cold, "sections": chosen},
        "sections": ctx.results,
    }
    t0 = time.perf_counter()
    try:
        for name in chosen:
            log(f"[{time.perf_counter() - t0:6.1f}s] {name}: {sections[name].title}")
            ctx.results[name] = run_section(sections[name], ctx)
            r = ctx.results[name]
            log(f"         {r['status']}" + (f": {r['reason']}" if r["status"] != "ok" else
                                              f" in {r['seconds']} s"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    doc["targets"] = [dict(t.to_dict(), line=t.line()) for t in report.targets(ctx.results)]
    pngs: dict[str, list[Path]] = {}
    for name, r in ctx.results.items():
        s = sections[name]
        if r["status"] == "ok" and s.plot is not None:
            try:
                pngs[name] = s.plot(r["data"], a.out)
            except Exception as e:  # a broken plot must not lose the measurements
                r["plot_error"] = f"{type(e).__name__}: {e}"
    if not plots.available():
        doc["plots_note"] = "no plots: matplotlib is not installed (pip install -e '.[bench]')"
    doc["plots"] = {k: [str(p) for p in v] for k, v in pngs.items()}
    (a.out / "results.json").write_text(json.dumps(doc, indent=2, default=str))
    (a.out / "report.md").write_text(report.markdown(doc, pngs, a.out))
    print("\n".join(report.headline(ctx.results)))
    print()
    print("\n".join(f"- {t['line']}" for t in doc["targets"]))
    print(f"\nwrote {a.out / 'results.json'} and {a.out / 'report.md'} in {doc['seconds']} s")
    return doc
