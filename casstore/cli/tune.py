"""CLI command ``casstore tune PATH...``: sweep chunker settings on the user's files and print
the recommended ``casstore init`` command (the measuring lives in :mod:`casstore.tools.tune`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from casstore.cli._common import AddCommand, amount, positive_amount
from casstore.cli._render import emit_json, human_bytes, table

MiB = 1 << 20


def _init_options() -> set[str]:
    """Option strings ``casstore init`` accepts (so new ones, e.g. an encoding, are used)."""
    from casstore.cli.versions import INIT_OPTIONS

    return {flag for flag, _ in INIT_OPTIONS}


def cmd_tune(args: argparse.Namespace) -> int:
    from casstore.tools.tune import DEFAULT_SETTINGS, Sampling, recommend, sweep

    sampling = Sampling(
        per_file=int(args.sample_mb * MiB),
        stripe=min(int(args.sample_mb * MiB), 32 * MiB),
        total=None if args.total_mb <= 0 else int(args.total_mb * MiB),
    )
    kinds = set(args.chunker or ["tensor", "fastcdc", "fixed"])
    settings = [s for s in DEFAULT_SETTINGS if s.kind in kinds]

    def progress(label: str) -> None:
        if not args.json and sys.stderr.isatty():
            print(f"\rmeasuring {label:<40}", end="", file=sys.stderr, flush=True)

    report = sweep(args.paths, settings, sampling=sampling, progress=progress)
    if not args.json and sys.stderr.isatty():
        print("\r" + " " * 60 + "\r", end="", file=sys.stderr)
    rec = recommend(report)
    command = rec.command(store=getattr(args, "store", None), supported=_init_options())
    if args.json:
        emit_json({**report.to_dict(), "recommendation": rec.to_dict(), "command": command})
        return 0
    _render(report, rec, command)
    return 0


def _render(report: Any, rec: Any, command: str) -> None:
    s = report.sampling
    print(f"{len(report.files)} files, {human_bytes(report.total_bytes)}", end="")
    if report.sampled:
        print(
            f"; sampled {human_bytes(report.sampled_bytes)}: files over "
            f"{human_bytes(s.per_file)} are read as {human_bytes(s.stripe)} stripes spread "
            f"evenly through each file (figures below are estimates from the sample)"
        )
    else:
        print(" (read whole)")
    rows = []
    for r in sorted(report.results, key=lambda r: (r.stored_bytes / max(r.logical_bytes, 1))):
        mark = "*" if r is rec.result else ""
        rows.append(
            [
                mark + r.setting.label,
                r.encoding,
                f"{r.stored_bytes / max(r.logical_bytes, 1):.3f}",
                f"{r.dedup_ratio:.2f}x",
                f"{r.objects_per_gb:,.0f}",
                f"{r.mb_per_s:,.0f}",
            ]
        )
    table(rows, ["setting", "encoding", "stored/logical", "dedup", "objects/GB", "MB/s"])
    print(
        "\nMB/s: chunk + hash + encode in one process, no writes; objects/GB: distinct chunks "
        "per GB of input (requests on a bucket)."
    )
    if rec.warning:
        print(f"\nwarning: {rec.warning}")
    print(f"\nrecommended: {rec.result.setting.label}, encoding {rec.result.encoding}")
    print(f"  why: {rec.reason}")
    print(
        f"  expected for these {human_bytes(rec.total_bytes)}: stored "
        f"{human_bytes(rec.expected_stored_bytes)} (dedup {rec.result.dedup_ratio:.2f}x), "
        f"~{rec.expected_objects:,} objects, ~{rec.result.mb_per_s:,.0f} MB/s chunk+hash"
    )
    if rec.is_default:
        print("  this is casstore's default; no change needed. To set it explicitly:")
    else:
        print("  apply to a new store (or change an existing store's settings for new commits):")
    print(f"    {command}")


def add_parser(add: AddCommand) -> None:
    """Add ``casstore tune``."""
    sp = add("tune", cmd_tune, "measure chunker settings on your files and recommend one")
    sp.add_argument("paths", nargs="+", help="model files or folders (e.g. a checkpoint series)")
    sp.add_argument(
        "--sample-mb", type=positive_amount, default=512,
        help="read files up to this size whole; sample bigger ones as stripes (default 512)",
    )
    sp.add_argument(
        "--total-mb", type=amount, default=1024,
        help="cap on the bytes sampled over all files; 0 = no cap (default 1024)",
    )
    sp.add_argument(
        "--chunker", action="append", choices=["tensor", "fastcdc", "fixed"],
        help="only sweep these chunker kinds (repeatable; default all)",
    )
