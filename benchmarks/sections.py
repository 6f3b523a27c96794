"""The sections of ``python -m benchmarks``, in report order (see :mod:`benchmarks.registry`).

series    generate the checkpoint series (every later section shares it)
peers     ingest, stored bytes, restore and peak RSS: casstore, restic, borg, plain copy
rss_2g    peak RSS while ingesting one 2 GiB safetensors file, every tool
rollback  casstore rollback latency, 1 MiB model vs 1 GiB model
gc        casstore GC time vs chunk count
ingest    dedup-only ingest vs blake3, new data vs dd conv=fsync (in-process)
latency   whole-process latency of refs, log and rollback --to vs python -c pass
torch     save / one-tensor load vs full load (benchmarks/torch_save.py, by its owner)
push_pull push/pull to moto's S3 server vs s3fs (benchmarks/push_pull.py, by its owner)
sweep     chunker settings x encodings on the series (casstore.tools.tune)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import blake3

from benchmarks import plots
from benchmarks.disk import SETTLE_S, dd_fsync, discards, settle
from benchmarks.peers import RSS_METHOD, TOOLS, Measured, Tool, run_measured
from benchmarks.registry import Context, Skip, section

MiB = 1 << 20


# -- shared helpers ------------------------------------------------------------------------
def file_digest(path: Path) -> str:
    h = blake3.blake3(max_threads=blake3.blake3.AUTO)
    with open(path, "rb") as f:
        while block := f.read(16 * MiB):
            h.update(block)
    return h.hexdigest()


def drop_caches() -> bool:
    """Write back and drop the page cache (root only); False if not allowed."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def prepare_phase(ctx: Context, inputs: list[Path]) -> None:
    """Before a timed phase: the same disk for every tool (:func:`benchmarks.disk.settle`,
    except in a quick run); cold -> drop caches; warm -> read the inputs into the cache."""
    if ctx.quick:
        os.sync()
    else:
        settle(ctx.work)  # writes back the page cache too
    if ctx.cold:
        if not drop_caches():
            raise Skip("--cold needs root to drop the page cache")
        return
    for p in inputs:
        with open(p, "rb") as f:
            while f.read(16 * MiB):
                pass


def series_info(ctx: Context) -> dict:
    if "series" not in ctx.shared:
        from benchmarks.series import SERIES_FULL, make_series

        t0 = time.perf_counter()
        info = make_series(ctx.work / "series", ctx.size_mb, SERIES_FULL)
        info["generate_seconds"] = round(time.perf_counter() - t0, 2)
        info["sizes"] = {k: Path(p).stat().st_size for k, p in info["files"].items()}
        info["digests"] = {k: file_digest(Path(p)) for k, p in info["files"].items()}
        ctx.shared["series"] = info
    return ctx.shared["series"]


def _mb_s(n: int, seconds: float) -> float:
    return round(n / seconds / 1e6, 1) if seconds > 0 else 0.0


# -- series --------------------------------------------------------------------------------
def _render_series(d: dict) -> list[str]:
    rows = ["| file | bytes |", "|---|---:|"]
    rows += [f"| {Path(p).name} | {d['sizes'][k]:,} |" for k, p in d["files"].items()]
    return rows + [
        "",
        f"Logical {d['logical_bytes']:,} bytes; unique tensor bytes (the dedup ideal) "
        f"{d['unique_tensor_bytes']:,}; generated in {d['generate_seconds']} s.",
    ]


@section("series", "The checkpoint series", requires=("torch", "safetensors"),
         render=_render_series)
def series(ctx: Context) -> dict:
    info = series_info(ctx)
    return {k: v for k, v in info.items() if k != "digests"}


# -- peers ---------------------------------------------------------------------------------
def measure_tool(tool: Tool, files: list[tuple[str, Path]], ctx: Context, digests: dict) -> dict:
    tool.work.mkdir(parents=True, exist_ok=True)
    tool.setup()
    logical = sum(p.stat().st_size for _, p in files)
    prepare_phase(ctx, [p for _, p in files])
    per: list[Measured] = []
    t0 = time.perf_counter()
    for name, path in files:
        m = run_measured(tool.ingest(name, path), env=tool.env)
        tool.after_ingest(name, m)
        per.append(m)
    os.sync()  # the tool pays for making its own writes durable
    ingest_s = time.perf_counter() - t0
    stored = tool.stored_bytes()

    dest = tool.work / f"{tool.name}-restore"
    prepare_phase(ctx, [])
    back: list[Measured] = []
    t0 = time.perf_counter()
    for name, _ in files:
        cmd, cwd = tool.restore(name, dest / name)
        back.append(run_measured(cmd, cwd=cwd, env=tool.env))
    os.sync()
    restore_s = time.perf_counter() - t0
    identical = {}
    for name, path in files:
        found = [f for f in (dest / name).rglob(path.name) if f.is_file()]
        identical[name] = len(found) == 1 and file_digest(found[0]) == digests[name]
    shutil.rmtree(dest, ignore_errors=True)
    others = {name: run_measured(cmd, env=tool.env).max_rss
              for name, cmd in tool.other_commands().items()}
    return {
        "other_peak_rss": others,
        "tool": tool.describe(),
        "ingest_seconds": round(ingest_s, 3),
        "ingest_MBps": _mb_s(logical, ingest_s),
        "ingest_command_seconds": [round(m.seconds, 3) for m in per],
        "ingest_peak_rss": max(m.max_rss for m in per),
        "ingest_cpu_seconds": round(sum(m.cpu_seconds for m in per), 2),
        "stored_bytes": stored,
        "restore_seconds": round(restore_s, 3),
        "restore_MBps": _mb_s(logical, restore_s),
        "restore_peak_rss": max(m.max_rss for m in back),
        "restore_cpu_seconds": round(sum(m.cpu_seconds for m in back), 2),
        "restored_identical": all(identical.values()),
        "restored_identical_files": identical,
    }


def _mean_run(rs: list[dict], logical: int) -> dict:
    """One tool's runs as one: mean times (throughput from them), the highest peak RSS, and
    every run's times kept."""
    if len(rs) == 1:
        return rs[0]
    r = dict(rs[0])
    for phase in ("ingest", "restore"):
        seconds = sum(x[f"{phase}_seconds"] for x in rs) / len(rs)
        r[f"{phase}_seconds"] = round(seconds, 3)
        r[f"{phase}_MBps"] = _mb_s(logical, seconds)
        r[f"{phase}_seconds_per_run"] = [x[f"{phase}_seconds"] for x in rs]
        r[f"{phase}_peak_rss"] = max(x[f"{phase}_peak_rss"] for x in rs)
        r[f"{phase}_cpu_seconds"] = round(sum(x[f"{phase}_cpu_seconds"] for x in rs) / len(rs), 2)
    r["other_peak_rss"] = {k: max(x["other_peak_rss"].get(k, 0) for x in rs)
                           for k in rs[0]["other_peak_rss"]}
    r["restored_identical"] = all(x["restored_identical"] for x in rs)
    return r


def available_tools(ctx: Context, sub: str) -> tuple[list[Tool], dict[str, str]]:
    tools, skipped = [], {}
    for name, cls in TOOLS.items():
        tool = cls(name, ctx.work / sub)
        why = tool.missing()
        if why:
            skipped[name] = why
        else:
            tools.append(tool)
    return tools, skipped


def _render_peers(d: dict) -> list[str]:
    rows = [
        "| tool | ingest MB/s | stored bytes | stored / unique | restore MB/s "
        "| ingest peak RSS MiB | restore peak RSS MiB | ingest CPU s | restore CPU s "
        "| restore identical |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, t in d["tools"].items():
        rows.append(
            f"| {name} | {t['ingest_MBps']:,} | {t['stored_bytes']:,} | "
            f"{t['stored_vs_unique']:.3f} | {t['restore_MBps']:,} | "
            f"{t['ingest_peak_rss'] / MiB:.0f} | {t['restore_peak_rss'] / MiB:.0f} | "
            f"{t.get('ingest_cpu_seconds', '-')} | {t.get('restore_cpu_seconds', '-')} | "
            f"{'yes' if t['restored_identical'] else '**NO**'} |"
        )
    rows.append("")
    rows += [f"- {name}: {t['tool']}" for name, t in d["tools"].items()]
    rows += [f"- {name}: skipped: {why}" for name, why in d["skipped"].items()]
    rows += [
        "",
        f"Each tool ran {d.get('rounds', 1)} time(s) (in order, then in reverse; times "
        f"averaged). One command per version; timings include an `os.sync()` after the last "
        f"command "
        f"(each tool pays for its own durable writes). CPU s: user + system seconds of "
        f"the tool's processes (the machine has {d.get('cores', '?')} cores). "
        f"Page cache: {d['cache']}. "
        f"Peak RSS: {d['rss_method']}. Stored bytes: apparent size of every file in the "
        f"tool's repository folder. casstore's commands run from bytecode, compiled once "
        f"before timing, as a pip-installed package runs (and borg, the other Python peer).",
    ]
    if "disk" in d:
        k = d["disk"]
        rows += ["", f"The disk, as every tool met it: `dd conv=fsync` of {k['dd_bytes']:,} "
                 "bytes of the series to a new file, before the first tool and after the last: "
                 + " and ".join(f"{x:,} MB/s" for x in k["dd_fsync_MBps"]) + ". Before each "
                 "timed phase the page cache is written back"
                 + (f" and, since this file system discards freed blocks, {k['settle_s']:g} s "
                    "pass for the blocks the last tool freed to go cold (written right after a "
                    "deletion, they run up to 6x faster: `benchmarks/disk.py`)"
                    if k["settle_s"] else "") + "."]
    return rows


@section("peers", "Ingest, storage, restore and memory: casstore vs restic, borg and a copy",
         requires=("torch", "safetensors"), render=_render_peers, plot=plots.peers)
def peers(ctx: Context) -> dict:
    info = series_info(ctx)
    files = [(k, Path(p)) for k, p in info["files"].items()]
    tools, skipped = available_tools(ctx, "peers")
    # the disk's speed drifts over minutes (one tool ran at 477 MB/s in one run, 962 in the
    # next): every tool runs twice, in order and then in reverse, and its times are averaged,
    # so a steady drift costs every tool the same
    order = tools if ctx.quick else tools + tools[::-1]
    runs: dict[str, list[dict]] = {}
    biggest = max((p for _, p in files), key=lambda p: p.stat().st_size)
    disk: list[float] = []  # the disk's own write rate, as each tool meets it, first and last
    if not ctx.quick:
        disk.append(dd_fsync(biggest, ctx.work))
    for tool in order:
        ctx.log(f"  peers: {tool.name}")
        runs.setdefault(tool.name, []).append(measure_tool(tool, files, ctx, info["digests"]))
        shutil.rmtree(tool.work, ignore_errors=True)
    if not ctx.quick:
        disk.append(dd_fsync(biggest, ctx.work))
    out = {}
    for name, rs in runs.items():
        r = _mean_run(rs, info["logical_bytes"])
        r["stored_vs_unique"] = round(r["stored_bytes"] / info["unique_tensor_bytes"], 4)
        out[name] = r
    return {
        "rounds": 1 if ctx.quick else 2,
        "tools": out,
        "skipped": skipped,
        "logical_bytes": info["logical_bytes"],
        "unique_tensor_bytes": info["unique_tensor_bytes"],
        "versions": len(files),
        "cache": "cold (dropped before each timed phase)" if ctx.cold
        else "warm (inputs read once before each timed phase)",
        "rss_method": RSS_METHOD,
        "cores": os.cpu_count(),
        **({"disk": {
            "dd_fsync_MBps": [round(x / 1e6, 1) for x in disk],
            "dd_bytes": biggest.stat().st_size,
            "settle_s": SETTLE_S if discards(ctx.work) else 0.0,
        }} if disk else {}),
    }


# -- peak RSS on one big file --------------------------------------------------------------
def _render_rss(d: dict) -> list[str]:
    rows = ["| tool | peak RSS MiB | seconds (incl. sync) |", "|---|---:|---:|"]
    for name, t in d["tools"].items():
        rows.append(f"| {name} | {t['peak_rss'] / MiB:.1f} | {t['seconds']} |")
    rows += [f"- {name}: skipped: {why}" for name, why in d["skipped"].items()]
    rows += ["", f"One safetensors file of {d['size_bytes']:,} bytes (16 random F32 tensors), "
             f"ingested into an empty repository. Peak RSS: {d['rss_method']}."]
    return rows


@section("rss_2g", "Peak RSS while ingesting one 2 GiB file", render=_render_rss,
         plot=plots.rss)
def rss_2g(ctx: Context) -> dict:
    from benchmarks.data import write_random_safetensors

    size = (32 if ctx.quick else 2048) * MiB
    path = write_random_safetensors(ctx.work / "big" / "model.safetensors", size, seed="rss")
    tools, skipped = available_tools(ctx, "rss")
    out = {}
    for tool in tools:
        tool.work.mkdir(parents=True, exist_ok=True)
        tool.setup()
        prepare_phase(ctx, [path])
        t0 = time.perf_counter()
        m = run_measured(tool.ingest("big", path), env=tool.env)
        os.sync()
        out[tool.name] = {"peak_rss": m.max_rss, "seconds": round(time.perf_counter() - t0, 3)}
        shutil.rmtree(tool.work, ignore_errors=True)
    path.unlink()
    return {"size_bytes": size, "tools": out, "skipped": skipped, "rss_method": RSS_METHOD}


# -- rollback ------------------------------------------------------------------------------
def _render_rollback(d: dict) -> list[str]:
    s, g = d["small"], d["large"]
    return [
        "| model | chunks | p50 ms | p90 ms |", "|---|---:|---:|---:|",
        f"| {s['size_bytes']:,} B | {s['chunks']} | {s['p50_ms']:.2f} | {s['p90_ms']:.2f} |",
        f"| {g['size_bytes']:,} B | {g['chunks']} | {g['p50_ms']:.2f} | {g['p90_ms']:.2f} |",
        "", f"Ratio large/small (p50): {d['ratio_p50']}. Each rollback opens a fresh "
        f"Repository (as a CLI call would), checks every chunk is present, moves the ref.",
    ]


@section("rollback", "casstore rollback latency vs model size", render=_render_rollback,
         plot=plots.rollback)
def rollback(ctx: Context) -> dict:
    from benchmarks.rollback import run

    return run(large_mb=16 if ctx.quick else 1024, repeats=10 if ctx.quick else 40,
               workdir=ctx.work)


# -- ingest at the machine's limits --------------------------------------------------------
def _render_ingest(d: dict) -> list[str]:
    from benchmarks.ingest_speed import render

    return render(d)


@section("ingest", "Ingest vs its bounds: dedup-only vs blake3, new data vs dd conv=fsync",
         requires=("torch", "safetensors"), render=_render_ingest)
def ingest(ctx: Context) -> dict:
    from benchmarks.ingest_speed import run

    files = series_info(ctx)["files"]
    return run([Path(files["base"]), Path(files["finetune.pt"])], ctx.work, settled=not ctx.quick)


# -- command latency -----------------------------------------------------------------------
def _render_latency(d: dict) -> list[str]:
    from benchmarks.latency import render

    return render(d)


@section("latency", "Command latency: refs, log, rollback vs python -c pass",
         render=_render_latency)
def latency(ctx: Context) -> dict:
    from benchmarks.latency import run

    return run(runs=1 if ctx.quick else 21, workdir=ctx.work, instructions=not ctx.quick)


# -- gc ------------------------------------------------------------------------------------
def _render_gc(d: dict) -> list[str]:
    rows = ["| chunks | deleted | plan s | execute s | total s | µs per chunk |",
            "|---:|---:|---:|---:|---:|---:|"]
    for r in d["runs"]:
        rows.append(f"| {r['chunks']:,} | {r['chunks_deleted']:,} | {r['plan_s']} | "
                    f"{r['execute_s']} | {r['total_s']} | {r['us_per_chunk']} |")
    return rows + ["", "10 versions of fixed 8 KiB chunks, keep-last 5: half become garbage."]


@section("gc", "casstore GC time vs chunk count", render=_render_gc, plot=plots.gc)
def gc(ctx: Context) -> dict:
    from benchmarks.gc_scale import run

    return {"runs": run([200, 1000] if ctx.quick else [1000, 10_000, 50_000], ctx.work)}


# -- sections owned by other modules, run as subprocesses that print JSON -------------------
def run_json_module(module: str, args: list[str], ctx: Context) -> dict:
    from importlib.util import find_spec

    if find_spec(module) is None:
        raise Skip(f"{module} is not there yet")
    p = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parent.parent)
    if p.returncode != 0:
        raise RuntimeError(f"{module} failed: {p.stderr.strip()[-1500:]}")
    start = p.stdout.find("{")
    return json.loads(p.stdout[start:])


def _render_json(d: dict) -> list[str]:
    return ["```json", json.dumps(d, indent=2)[:6000], "```"]


@section("torch", "casstore.torch: save throughput, one-tensor load vs full load",
         requires=("torch", "safetensors"), render=_render_json)
def torch_load(ctx: Context) -> dict:
    size = 8 if ctx.quick else min(256, ctx.size_mb)
    return run_json_module(
        "benchmarks.torch_save",
        ["--size-mb", str(size), "--tensors", "8" if ctx.quick else "32",
         "--workdir", str(ctx.work)],
        ctx,
    )


@section("push_pull", "Push/pull to moto's S3 server vs s3fs",
         requires=("moto", "s3fs", "boto3", "torch"), render=_render_json)
def push_pull(ctx: Context) -> dict:
    """At two scales: a model of ``min(128, size)`` MiB (chunk objects ~1 MB, the files a
    team moves), with the S3 commands' peak RSS; and a 32 MiB one whose ~120 chunk objects
    average ~300 KB, where the server's cost per request decides (both in full runs); and 20
    small versions over a 20 ms round trip (``--link``)."""
    if ctx.quick:
        return run_json_module("benchmarks.push_pull",
                               ["--size-mb", "2", "--rounds", "1", "--commands", "--link"], ctx)
    model = run_json_module(
        "benchmarks.push_pull",
        ["--size-mb", str(min(128, ctx.size_mb)), "--rounds", "3", "--commands"], ctx)
    model["small_files"] = run_json_module("benchmarks.push_pull",
                                           ["--size-mb", "32", "--rounds", "3", "--link"],
                                           ctx)
    return model


# -- sweep ---------------------------------------------------------------------------------
def _sweep_render(d: dict) -> list[str]:
    from benchmarks.sweep import render

    return render(d)


@section("sweep", "Chunker settings x encodings on the series (casstore.tools.tune)",
         requires=("torch", "safetensors"), render=_sweep_render, plot=plots.sweep)
def sweep(ctx: Context) -> dict:
    from benchmarks.sweep import run_sweep

    info = series_info(ctx)
    return run_sweep(list(info["files"].values()))
