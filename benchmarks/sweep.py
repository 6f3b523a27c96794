"""Settings sweep: chunker kind and chunk sizes x every chunk encoding casstore has
(``casstore.repo.chunks.ENCODINGS``, so new encodings appear here without edits), on the
checkpoint series. Each row: stored bytes (vs unique tensor bytes), objects per GB (request
cost on a bucket) and throughput (chunk + hash + encode in one process, nothing written).

    python -m benchmarks.sweep [--size-mb 128] [--out benchmarks/out/sweep] [--quick]
    python -m benchmarks.sweep --files a.safetensors b.safetensors   # your own files
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path


def run_sweep(files: list[str], *, exact: bool = True) -> dict:
    from casstore.tools.tune import EXACT, recommend, sweep

    report = sweep(files, sampling=EXACT if exact else None)
    rec = recommend(report)
    doc = report.to_dict()
    doc["recommendation"] = {**rec.to_dict(), "command": rec.command()}
    try:
        from benchmarks.series import unique_tensor_bytes

        doc["unique_tensor_bytes"] = unique_tensor_bytes(files)
    except Exception:  # not tensor files: no ideal to compare with
        doc["unique_tensor_bytes"] = None
    return doc


def render(d: dict) -> list[str]:
    unique = d.get("unique_tensor_bytes")
    rows = [
        "| setting | encoding | stored bytes | stored / unique | objects | objects per GB "
        "| MB/s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    best = d["recommendation"]
    for r in sorted(d["results"], key=lambda r: r["stored_bytes"]):
        mark = " **(recommended)**" if (
            r["chunker"] == best["chunker"] and r["encoding"] == best["encoding"]
        ) else ""
        vs = f"{r['stored_bytes'] / unique:.3f}" if unique else "-"
        rows.append(
            f"| {r['label']}{mark} | {r['encoding']} | {r['stored_bytes']:,} | {vs} | "
            f"{r['objects']:,} | {r['objects_per_gb']:,.0f} | {r['MB_per_s']:,.0f} |"
        )
    s = d["sampling"]
    rows += [
        "",
        f"Input {d['total_bytes']:,} bytes, "
        + (f"sampled {d['sampled_bytes']:,}" if s["sampled"] else "read whole")
        + ". Stored bytes include each object's header and chunks kept inline in manifests; "
        "MB/s is one process cutting, hashing and encoding, no writes (noisy: compare "
        "within a run).",
        f"Recommended: `{best['command']}` ({best['reason']}).",
    ]
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=float, default=128, help="base model size of the series")
    ap.add_argument("--quick", action="store_true", help="a 4 MB series (smoke test)")
    ap.add_argument("--files", nargs="+", help="sweep these files instead of the series")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/sweep"))
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="casstore-sweep-"))
    try:
        if a.files:
            files = a.files
        else:
            from benchmarks.series import make_series

            files = list(make_series(work, 4 if a.quick else a.size_mb)["files"].values())
        doc = run_sweep(files)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (a.out / "sweep.json").write_text(json.dumps(doc, indent=2))
    (a.out / "sweep.md").write_text("# Settings sweep\n\n" + "\n".join(render(doc)) + "\n")
    from benchmarks import plots

    pngs = plots.sweep(doc, a.out)
    print("\n".join(render(doc)))
    print(f"\nwrote {a.out / 'sweep.json'}, {a.out / 'sweep.md'}"
          + "".join(f", {p}" for p in pngs))
    return doc


if __name__ == "__main__":
    main()
