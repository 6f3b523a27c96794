"""CLI for the serving side: ``status`` (which follower serves what, how stale)."""

from __future__ import annotations

import argparse
import time

from casstore.cli._common import AddCommand, open_repo
from casstore.cli._render import emit_json, table


def cmd_status(args: argparse.Namespace) -> int:
    from casstore.serving.acks import read_acks

    repo = open_repo(args)
    repo.versions(args.model)  # unknown model -> clear error
    try:
        target = repo.refs.get(args.model, args.ref)
        wanted = sorted(t.version for t in target.versions())
    except FileNotFoundError:
        target, wanted = None, []
    acks = read_acks(repo.store, args.model, args.ref)
    if args.json:
        emit_json(
            {
                "model": args.model,
                "ref": args.ref,
                "target": wanted,
                "followers": [
                    a.to_dict() | {"on_target": sorted(a.versions) == wanted} for a in acks
                ],
            }
        )
    else:
        print(f"{args.model}@{args.ref} -> {target.describe() if target else '(no ref)'}")
        if not acks:
            print("no follower has reported for this ref")
            return 0
        table(
            [
                [
                    a.id,
                    ",".join(a.versions) or "-",
                    "yes" if sorted(a.versions) == wanted else "NO",
                    a.state,
                    f"{a.age:.1f}s ago" + ("" if a.live else " (gone)"),
                    f"{time.time() - a.checked:.1f}s ago" if a.checked else "-",
                    (f"{a.failed_version}: " if a.failed_version else "") + a.last_error,
                ]
                for a in acks
            ],
            ["follower", "serving", "on target", "state", "heartbeat", "ref read", "error"],
        )
    return 0


def add_parser(add: AddCommand) -> None:
    """Add ``casstore status``."""
    sp = add("status", cmd_status, "followers serving a ref: version, staleness, failures")
    sp.add_argument("model")
    sp.add_argument("--ref", default="current")
