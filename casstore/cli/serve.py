"""CLI for the serving side: ``status`` (which follower serves what, how stale, what it sees)
and ``watch`` (judge the live figures under a policy; roll back automatically)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from casstore.cli import _shapes as shapes
from casstore.cli._common import (
    EXIT_VIOLATION,
    AddCommand,
    open_repo,
    parse_duration,
)
from casstore.cli._render import emit_json, table

STATUS_WINDOW = 60.0
"""Seconds of live figures ``status`` sums up per follower."""


def _live_summary(ack: Any) -> str:
    from casstore.serving.live import live_figures

    figs = live_figures([ack.figures], window=STATUS_WINDOW)
    parts = []
    for v, f in sorted(figs.items()):
        text = f"{v}: {f['requests']:.0f} req"
        if f["requests"]:
            text += f", {f['error_rate']:.1%} err, p99 {f['latency_p99_ms']:.3g} ms"
        parts.append(text)
    return "; ".join(parts) or "-"


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
                "model_name": args.model,
                "ref": args.ref,
                "target": wanted,
                "followers": [
                    shapes.with_model_name(a.to_dict())
                    | {"on_target": sorted(a.versions) == wanted}
                    for a in acks
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
                    _live_summary(a),
                    (f"{a.failed_version}: " if a.failed_version else "") + a.last_error,
                ]
                for a in acks
            ],
            ["follower", "serving", "on target", "state", "heartbeat", "ref read",
             f"last {STATUS_WINDOW:g}s", "error"],
        )
    return 0


def _observe(args: argparse.Namespace, repo: Any, window: float) -> tuple[Any, dict]:
    """What ``Watcher.check`` takes: a function making per-version figures from the live
    followers' acknowledgements over ``window`` merged with what ``--metrics-cmd`` prints
    (which wins), and the command's flat figures."""
    from casstore.ops.watch import merge_figures, metrics_from_command
    from casstore.serving.acks import read_acks
    from casstore.serving.live import live_figures

    per_version: dict[str, dict[str, float]] = {}
    flat: dict[str, float] = {}
    if args.metrics_cmd:
        per_version, flat = metrics_from_command(args.metrics_cmd)

    def observed(fresh_since: dict[str, float]) -> dict[str, dict[str, float]]:
        acks = [a for a in read_acks(repo.store, args.model, args.ref) if a.live]
        live = live_figures([a.figures for a in acks], window=window, fresh_since=fresh_since)
        return merge_figures(live, per_version)

    return observed, flat


def _watch_doc(repo: Any, rep: Any) -> dict[str, Any]:
    """A watch report in the shared JSON shapes: the watched version and each attempt are
    version references (``semver``, ``version``, ``name``, ``id``)."""
    doc = shapes.with_model_name(rep.to_dict())
    semver = doc.pop("version")
    doc["semver"] = semver
    ref = shapes.semver_ref(repo, rep.model, semver) or {}
    doc.update({k: ref.get(k) for k in ("version", "name", "id")})
    doc["attempts"] = [
        {**{k: v for k, v in a.items() if k != "version"},
         **(shapes.semver_ref(repo, rep.model, a.get("version")) or {})}
        for a in rep.attempts
    ]
    return doc


def _say(args: argparse.Namespace, rep: Any, lines: bool, repo: Any) -> None:
    if args.json:
        doc = _watch_doc(repo, rep)
        if lines:
            print(json.dumps(doc, default=str), flush=True)
        else:
            emit_json(doc)
        return
    mine = rep.figures.get(rep.version, {})
    shown = ", ".join(
        f"{k}={mine[k]:.4g}" for k in ("requests", "error_rate", "latency_p99_ms") if k in mine
    )
    print(f"{time.strftime('%H:%M:%S')} {rep.model}@{rep.ref} #{rep.seq} {rep.version}: "
          f"{rep.state}" + (f" ({shown})" if shown else "") + f"; {rep.message}", flush=True)
    for a in rep.attempts:
        print(f"  attempt {a['version']}: {'ok' if a['ok'] else 'FAILED'}: {a['message']}")


def cmd_watch(args: argparse.Namespace) -> int:
    from casstore.errors import CasstoreError
    from casstore.ops.regression import WatchPolicy
    from casstore.ops.watch import ACTED, FAILED, Watcher

    policy = WatchPolicy.load(args.policy)
    interval = parse_duration(args.interval)
    if interval <= 0:
        from casstore.errors import InvalidInputError

        raise InvalidInputError(f"--interval must be above 0, got {args.interval!r}")
    repo = open_repo(args)
    for cmd in args.notify:
        repo.hooks.notify_commands.append(cmd)
    repo.versions(args.model)  # unknown model -> clear error
    watcher = Watcher(repo.rollout, args.model, policy, ref=args.ref,
                      health_check=args.health_check, watcher_id=args.watcher_id,
                      dry_run=args.dry_run)
    if args.once:
        rep = watcher.check(*_observe(args, repo, policy.window))
        _say(args, rep, lines=False, repo=repo)
        return 1 if rep.state in FAILED else EXIT_VIOLATION if rep.state in ACTED else 0
    last: tuple[Any, ...] = ()
    while True:
        started = time.monotonic()
        try:
            rep = watcher.check(*_observe(args, repo, policy.window))
        except CasstoreError as e:  # a store or metrics hiccup: say so, keep watching
            print(f"casstore: watch: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        else:
            now = (rep.state, rep.seq, rep.version)
            if now != last or rep.attempts:
                _say(args, rep, lines=True, repo=repo)
            last = now
        time.sleep(max(0.0, interval - (time.monotonic() - started)))


def add_parser(add: AddCommand) -> None:
    """Add ``casstore status`` and ``casstore watch``."""
    sp = add("status", cmd_status, "followers serving a ref: version, staleness, failures")
    sp.add_argument("model")
    sp.add_argument("--ref", default="current")

    sp = add("watch", cmd_watch,
             "judge a ref's live figures under a policy; roll back automatically on violation")
    sp.add_argument("model")
    sp.add_argument("--policy", required=True,
                    help="watch policy JSON file (rules, window, min_requests, sustain, "
                    "max_attempts: see the README's 'Automatic rollback')")
    sp.add_argument("--ref", default="current", help="ref to watch (default: current)")
    sp.add_argument("--interval", default="30s", help="time between checks (default 30s)")
    sp.add_argument("--once", action="store_true",
                    help="check once and exit: 0 fine or no verdict yet, 8 acted on a "
                    "violation (or would, with --dry-run), 1 no rollback target passed")
    sp.add_argument("--metrics-cmd",
                    help="shell command printing figures as JSON ({\"versions\": {VERSION: "
                    "{METRIC: NUMBER}}} and/or top-level METRIC: NUMBER for the judged version)")
    sp.add_argument("--dry-run", action="store_true", help="report what it would do; move nothing")
    sp.add_argument("--health-check",
                    help="shell command run against each rollback target; non-zero exit makes "
                    "watch try the next older stable version")
    sp.add_argument("--watcher-id", help="name of this watcher in incidents and the reflog")
    sp.add_argument("--notify", action="append", default=[],
                    help="shell command that receives each JSON event on stdin")
