"""Sections of ``python -m benchmarks`` for chunk encodings (issue 13).

training  a real training run (fp32 and bf16 weights, AdamW state every N steps) stored by
          casstore with encodings on (default policy) and off, restic and borg
codecs    candidate codec libraries vs casstore's encodings, in-process, on those checkpoints
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from benchmarks.registry import Context, section
from benchmarks.sections import available_tools, file_digest, measure_tool

MiB = 1 << 20
PEERS = ("casstore", "casstore-off", "restic", "borg")


def training_info(ctx: Context) -> dict:
    """Train once per run (shared by the sections)."""
    if "training" not in ctx.shared:
        from benchmarks.training import QUICK, RunConfig, load_series, train_series

        t0 = time.perf_counter()
        if ctx.training_dir is not None:
            info = load_series(ctx.training_dir)
        else:
            info = train_series(ctx.work / "training", QUICK if ctx.quick else RunConfig())
        info["generate_seconds"] = round(time.perf_counter() - t0, 2)
        ctx.shared["training"] = info
    return ctx.shared["training"]


def _render_training(d: dict) -> list[str]:
    c = d["config"]
    rows = [
        f"{d['params']:,} parameters ({c['layers']} layers, d_model {c['d_model']}, vocab "
        f"{c['vocab']}), AdamW lr {c['lr']} (warmup {c['warmup']}), batch {c['batch']}x"
        f"{c['seq']} tokens, {c['steps']} steps, saved every {c['save_every']} "
        f"steps; loss at the saves: {', '.join(map(str, d['losses']))}. Trained in "
        f"{d['generate_seconds']} s.",
        "",
        "| series | tool | logical bytes | stored bytes | stored / logical | ingest MB/s "
        "| restore MB/s | restore identical |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for kind, tools in d["kinds"].items():
        for name, t in tools.items():
            rows.append(
                f"| {kind} | {name} | {t['logical_bytes']:,} | {t['stored_bytes']:,} | "
                f"{t['stored_vs_logical']:.3f} | {t['ingest_MBps']:,} | {t['restore_MBps']:,} "
                f"| {'yes' if t['restored_identical'] else '**NO**'} |")
    rows += [f"- {name}: skipped: {why}" for name, why in d["skipped"].items()]
    if d.get("entropy"):
        rows += ["", "What coding byte-grouped streams can reach on these files (order-0 "
                 "entropy of each tensor's byte streams, values rotated as casstore's are; "
                 "`benchmarks.training.stream_entropy`), as a fraction of the files' bytes:",
                 "", "| series | each alone | XOR with the previous checkpoint | each byte "
                 "given the previous checkpoint's |", "|---|---:|---:|---:|"]
        rows += [f"| {kind} | {e['plain']:.3f} | {e['xor_previous']:.3f} | "
                 f"{e['given_previous']:.3f} |" for kind, e in d["entropy"].items()]
    return rows + ["", "One command per checkpoint, each kind in its own repository; "
                   "timings include an `os.sync()` (see the peers section)."]


@section("training", "A real training run: fp32, bf16 and AdamW state every N steps",
         requires=("torch", "safetensors"), render=_render_training)
def training(ctx: Context) -> dict:
    info = training_info(ctx)
    kinds: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    for kind, paths in info["files"].items():
        files = [(f"{kind}-{Path(p).stem}", Path(p)) for p in paths]
        digests = {name: file_digest(p) for name, p in files}
        logical = sum(p.stat().st_size for _, p in files)
        tools, why = available_tools(ctx, f"training-{kind}")
        skipped.update(why)
        kinds[kind] = {}
        for tool in tools:
            if tool.name not in (PEERS[:2] if ctx.quick else PEERS):  # quick: casstore only
                continue
            ctx.log(f"  training/{kind}: {tool.name}")
            r = measure_tool(tool, files, ctx, digests)
            r["logical_bytes"] = logical
            r["stored_vs_logical"] = round(r["stored_bytes"] / logical, 4)
            kinds[kind][tool.name] = r
            shutil.rmtree(tool.work, ignore_errors=True)
    from benchmarks.training import stream_entropy

    bounds = {kind: stream_entropy(info["files"][kind]) for kind in ("fp32", "bf16")}
    return {k: v for k, v in info.items() if k != "files"} | {
        "kinds": kinds, "skipped": skipped, "checkpoints": len(info["files"]["fp32"]),
        "entropy": bounds}


def _render_codecs(d: dict) -> list[str]:
    from benchmarks.codecs import render

    return render(d) + ["", "In-process, one chunk at a time (<= 16 MiB tensor pieces), "
                        "'xor' = XOR with the same tensor of the previous checkpoint. "
                        "MB/s of decoded bytes; threads as named (t1/t2); 2 shared cores, "
                        "noisy. 'round trip' compares every decoded byte."]


@section("codecs", "Codec libraries vs casstore's encodings on the training checkpoints",
         requires=("torch", "safetensors"), render=_render_codecs)
def codecs(ctx: Context) -> dict:
    from benchmarks.codecs import measure

    info = training_info(ctx)
    n = 3 if ctx.quick else 4  # enough for 2-3 deltas; every candidate is slow on 2 cores
    out = {"files": [], "rows": []}
    for kind in ("fp32", "bf16"):
        r = measure([Path(p) for p in info["files"][kind][:n]])
        out["files"] += r["files"]
        out["rows"] += r["rows"]
        out["skipped"] = {**out.get("skipped", {}), **r["skipped"]}
    return out
