"""CLI commands that move versions between stores: push, pull, replicate."""

from __future__ import annotations

import argparse

from casstore.cli._common import VERSION_FORMS, AddCommand, open_repo, store_url
from casstore.cli._render import ProgressBar, emit_json, human_bytes
from casstore.repo.versioning import parse_spec


def _run_transfer(args: argparse.Namespace, src_url: str, dst_url: str) -> int:
    from casstore.ops.transfer import select_versions

    src, dst = open_repo(args, src_url), open_repo(args, dst_url, create=True)
    versions = select_versions(src.ctx, args.model, args.version, args.all)
    refs = list(args.ref)
    named = parse_spec(args.model, args.version) if args.model and args.version else None
    if named is not None and named.ref is not None and named.ref not in refs:
        refs.append(named.ref)  # pushing @production (or production) moves that ref too
    total = sum(v.size_bytes for v in versions)
    bar = None if args.json else ProgressBar(total, f"{args.command} {dst_url}")
    try:
        report = src.push(dst, versions, refs=refs, progress=bar)
    finally:
        if bar:
            bar.close()
    if args.json:
        emit_json({"from": src.store.url, "to": dst.store.url, **report.to_dict()})
    else:
        print(
            f"{args.command}: {len(report.versions)} versions to {dst.store.url}: sent "
            f"{report.chunks_sent} chunks ({human_bytes(report.bytes_sent)}), "
            f"{report.chunks_present} already there, in {report.seconds:.2f}s"
        )
        for r in report.refs_moved:
            print(f"  moved {r}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    return _run_transfer(args, store_url(args), args.remote)


def cmd_pull(args: argparse.Namespace) -> int:
    return _run_transfer(args, args.remote, store_url(args))


def cmd_replicate(args: argparse.Namespace) -> int:
    src, dst = open_repo(args, args.source), open_repo(args, args.dest, create=True)
    models = args.model or src.models()
    out = []
    for m in models:
        refs = list(src.refs.list(m))
        out.append(src.push(dst, src.versions(m), refs=refs).to_dict() | {"model_name": m})
    if args.json:
        emit_json({"from": src.store.url, "to": dst.store.url, "models": out})
    else:
        for r in out:
            print(
                f"{r['model_name']}: {len(r['versions'])} versions, sent {r['chunks_sent']} chunks "
                f"({human_bytes(r['bytes_sent'])}), refs moved: {', '.join(r['refs_moved']) or '-'}"
            )
    return 0


def add_parser(add: AddCommand) -> None:
    """Add push, pull and replicate."""
    for name, fn, helptext in (
        ("push", cmd_push, "copy versions from this store to REMOTE (only missing chunks)"),
        ("pull", cmd_pull, "copy versions from REMOTE into this store (only missing chunks)"),
    ):
        sp = add(name, fn, helptext)
        sp.add_argument("remote", help="the other store's URL")
        sp.add_argument("model", nargs="?", help="model (default: every model)")
        sp.add_argument("version", nargs="?", help="version (default: @current): " + VERSION_FORMS)
        sp.add_argument("--all", action="store_true", help="every version of the model")
        sp.add_argument(
            "--ref", action="append", default=[], help="also move this ref at the destination"
        )
    sp = add("replicate", cmd_replicate, "copy every version and ref from SOURCE to DEST")
    sp.add_argument("source")
    sp.add_argument("dest")
    sp.add_argument("--model", action="append", default=[], help="only these models")
