"""CLI commands that read or move refs: refs, reflog, promote, rollback, advance, abort, check."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from casstore.cli import _shapes as shapes
from casstore.cli._common import (
    EXIT_NOTIFY_FAILED,
    EXIT_VIOLATION,
    STEPS_HELP,
    VERSION_FORMS,
    AddCommand,
    amount,
    open_repo,
    parse_metrics,
    parse_steps,
    positive_amount,
)
from casstore.cli._render import emit_json, table
from casstore.ops.hooks import CHECK_ENV, DEFAULT_CHECK_TIMEOUT, DEFAULT_NOTIFY_TIMEOUT
from casstore.ops.rules import PREVIOUS_STABLE_RULE
from casstore.repo.times import WHEN_HELP

HOOK_ENV_HELP = "Checks run with sh -c; their environment adds " + "; ".join(
    f"{name}: {what}" for name, what in CHECK_ENV.items()
)


def _repo(args: argparse.Namespace) -> Any:
    repo = open_repo(args)
    for cmd in getattr(args, "notify", None) or []:
        repo.hooks.notify_commands.append(cmd)
    if getattr(args, "hook_timeout", None) is not None:
        repo.hooks.health_timeout = repo.hooks.notify_timeout = args.hook_timeout
    return repo


def _wait(
    args: argparse.Namespace,
    store: Any,
    versions: set[str],
    timeout: float,
    seq: int | None,
    allow_none: bool,
) -> dict:
    """``--wait``: until every live follower of the ref in ``store`` serves ``versions``, one
    of them reports that it failed to take the move ``seq``, or ``timeout``. No live follower
    at all is a failure unless ``allow_none``."""
    from casstore.serving.acks import failed_move, wait_for_followers

    done, acks = wait_for_followers(
        store, args.model, args.ref, versions, timeout=timeout, seq=seq
    )
    lagging = [
        f"{a.id} serves {','.join(a.versions) or '-'}"
        + (f" ({a.last_error})" if a.last_error else "")
        for a in acks
        if set(a.versions) != versions
    ]
    failed = [a.id for a in acks if seq is not None and failed_move(a, seq)]
    if not acks:
        done = allow_none
        note = f"no live follower of {args.model}@{args.ref} confirmed the move" + (
            "" if done else " (--allow-no-followers accepts that)"
        )
    elif done:
        note = f"{len(acks)} live follower(s) serving it"
    else:
        note = f"NOT landed on: {'; '.join(lagging)}" + (
            f" (failed on {', '.join(failed)}: not waiting longer)" if failed else ""
        )
    return {"done": done, "followers": [a.to_dict() for a in acks], "note": note}


def _print_move(args: argparse.Namespace, res: Any, repo: Any) -> int:
    doc = shapes.ref_move(repo, res)
    code = 0 if res.ok else 1
    if res.ok and getattr(args, "wait", False) and res.new is not None:
        versions = {t.version for t in res.new.versions()}
        seq = res.entries[-1].seq if res.entries else None
        w = _wait(args, repo.store, versions, args.timeout, seq, args.allow_no_followers)
        doc["followers"] = w["followers"]
        doc["all_followers_on_target"] = w["done"]
        code = 0 if w["done"] else 1
        res.message += "; " + w["note"]
    for problem in res.notify_failures:
        print(f"casstore: warning: {problem} (the move stands)", file=sys.stderr)
    if res.notify_failures and code == 0:
        code = EXIT_NOTIFY_FAILED
    if args.json:
        emit_json(doc | {"message": res.message})
    else:
        print(("ok: " if res.ok and code in (0, EXIT_NOTIFY_FAILED) else "FAILED: ")
              + res.message)
    return code


def cmd_refs(args: argparse.Namespace) -> int:
    repo = _repo(args)
    repo.versions(args.model)  # unknown model -> clear error
    refs = repo.refs.list(args.model)
    if args.json:
        emit_json(
            {
                "model_name": args.model,
                "refs": {
                    k: {
                        "value": shapes.ref_value(repo, args.model, r.value),
                        "describe": r.value.describe(),
                        "seq": r.seq,
                        "updated_at": r.entry.time.isoformat(),
                        "by": r.entry.actor,
                    }
                    for k, r in refs.items()
                },
            }
        )
        return 0
    table(
        [
            [k, r.value.describe(), r.seq, f"{r.entry.time:%Y-%m-%d %H:%M:%S}", r.entry.actor]
            for k, r in refs.items()
        ],
        ["ref", "points at", "moves", "updated (UTC)", "by"],
    )
    return 0


def cmd_reflog(args: argparse.Namespace) -> int:
    from casstore.repo.times import parse_when

    repo = _repo(args)
    repo.catalog.view(args.model)  # unknown model -> exit 3, as for show (one read)
    if args.at:  # reads only the entries after that time
        entries = repo.refs.at(args.model, parse_when(args.at, end=True), args.ref)
    else:
        entries = repo.refs.reflog(args.model, args.ref)
    if args.json:
        emit_json({"model_name": args.model,
                   "entries": [shapes.reflog_entry(repo, e) for e in entries]})
        return 0
    table(
        [
            [
                f"{e.time:%Y-%m-%d %H:%M:%S}",
                e.ref,
                e.seq,
                e.op,
                e.trigger,
                e.old.describe() if e.old else "-",
                e.new.describe() if e.new else "-",
                e.actor,
                e.reason,
            ]
            for e in entries
        ],
        ["time (UTC)", "ref", "#", "op", "trigger", "old", "new", "actor", "reason"],
    )
    return 0


def _store_outcome(repo: Any, o: Any) -> dict[str, Any]:
    """One store's part of a rollback across stores: its move in the ref-move shape."""
    doc = {"store": o.store, "ok": o.ok, "message": o.message}
    if o.move is not None:
        doc["result"] = shapes.ref_move(repo, o.move) | {
            k: v for k, v in (o.result or {}).items() if k in ("followers",
                                                             "all_followers_on_target")
        }
    return doc


def _across(args: argparse.Namespace, repo: Any, to: str | None, op: str) -> int:
    from casstore.ops.transfer import rollback_across

    repos = [repo] + [open_repo(args, u) for u in args.replica]
    outcomes = rollback_across(
        [r.rollout for r in repos],
        args.model,
        to=to,
        ref=args.ref,
        reason=args.reason or "",
        verify_data=args.verify_data,
        op=op,
        verify=args.verify,
    )
    ok = all(o.ok for o in outcomes)
    if ok and args.wait:  # every store's followers, within one overall timeout
        import time

        deadline = time.monotonic() + args.timeout
        followers = 0
        for r, o in zip(repos, outcomes):
            versions = {(o.result or {}).get("new_version") or ""}
            seq = ((o.result or {}).get("reflog") or [{}])[-1].get("seq")
            left = max(0.0, deadline - time.monotonic())
            w = _wait(args, r.store, versions, left, seq, allow_none=True)
            o.result = (o.result or {}) | {
                "followers": w["followers"],
                "all_followers_on_target": w["done"],
            }
            o.message += "; " + w["note"]
            ok = ok and w["done"]
            followers += len(w["followers"])
        if not followers and not args.allow_no_followers:  # a store may have none, not all
            ok = False
            for o in outcomes:
                o.message += " (no store has a live follower: --allow-no-followers accepts that)"
    if args.json:
        emit_json({"model_name": args.model, "ref": args.ref,
                   "stores": [_store_outcome(r, o) for r, o in zip(repos, outcomes)]})
    else:
        for o in outcomes:
            done = o.ok and (o.result or {}).get("all_followers_on_target", True)
            print(f"{'ok' if done else 'FAILED'}  {o.store}: {o.message}")
    return 0 if ok else 1


def cmd_promote(args: argparse.Namespace) -> int:
    repo = _repo(args)
    if args.replica:
        return _across(args, repo, args.version, "promote")
    if args.steps:
        res = repo.start_split(args.model, args.version, steps=parse_steps(args.steps),
                               op="rollout", **_move_options(args, split=True))
    else:
        res = repo.promote(args.model, args.version, **_move_options(args))
    return _print_move(args, res, repo)


def _move_options(args: argparse.Namespace, *, split: bool = False) -> dict[str, Any]:
    """What every promote/rollback/undo takes from the command line (a split has no health
    check: its traffic moves in steps)."""
    opts = {"ref": args.ref, "reason": args.reason or "", "verify_data": args.verify_data,
            "pre_check": args.pre_check, "verify": args.verify}
    return opts if split else opts | {"health_check": args.health_check}


def cmd_rollback(args: argparse.Namespace) -> int:
    from casstore.errors import InvalidInputError

    repo = _repo(args)
    chosen = [o for o, on in (("--to", args.to is not None), ("--previous-stable",
              args.previous_stable), ("--undo", args.undo)) if on]
    if len(chosen) != 1:
        raise InvalidInputError(
            "say where to: one of --previous-stable, --to VERSION or --undo"
            if not chosen else f"{' and '.join(chosen)} exclude each other"
        )
    if args.undo and (args.replica or args.steps):
        raise InvalidInputError("--undo reverts one store's last move: no --replica or --steps")
    if args.replica:
        return _across(args, repo, args.to, "rollback")
    if args.undo:
        res = repo.undo(args.model, **_move_options(args))
    elif args.steps:
        target = args.to or repo.previous_stable(args.model, args.ref).version
        res = repo.start_split(args.model, target, steps=parse_steps(args.steps), op="rollback",
                               **_move_options(args, split=True))
    else:
        res = repo.rollback(args.model, to=args.to, **_move_options(args))
    return _print_move(args, res, repo)


def cmd_advance(args: argparse.Namespace) -> int:
    repo = _repo(args)
    weight = parse_steps(args.weight, "--weight")[0] if args.weight else None
    return _print_move(
        args, repo.advance(args.model, ref=args.ref, weight=weight, reason=args.reason or ""),
        repo,
    )


def cmd_abort(args: argparse.Namespace) -> int:
    repo = _repo(args)
    return _print_move(
        args, repo.abort(args.model, ref=args.ref, reason=args.reason or ""), repo
    )


def cmd_resolve(args: argparse.Namespace) -> int:
    repo = _repo(args)
    t = repo.resolve(args.model, args.ref, args.key)
    if args.json:
        emit_json({"model_name": args.model, "ref": args.ref, "key": args.key,
                   **shapes.version_ref(repo, args.model, t.version, t.manifest)})
    else:
        print(t.version)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from casstore.ops.regression import RegressionPolicy

    repo = _repo(args)
    policy = RegressionPolicy.load(args.policy)
    out = repo.check_regression(
        args.model,
        policy,
        ref=args.ref,
        candidate=args.candidate,
        metrics=parse_metrics(args.metric),
        act=not args.dry_run,
        reason=args.reason or "",
    )
    if args.json:
        emit_json(shapes.with_model_name(out))
    else:
        print(
            f"{args.model}@{args.ref}: candidate {out['candidate']} vs baseline "
            f"{out['baseline']}: {len(out['violations'])} violation(s); action {out['action']}"
        )
        for v in out["violations"]:
            print(f"  - {v}")
    return EXIT_VIOLATION if out["violations"] else 0


def add_parser(add: AddCommand) -> None:
    """Add the ref commands."""
    def ref_opts(sp: Any, reason: bool = True) -> None:
        sp.add_argument("--ref", default="current", help="ref to move (default: current)")
        if reason:
            sp.add_argument("--reason", help="why (recorded in the reflog)")
        sp.add_argument(
            "--notify",
            action="append",
            default=[],
            help="shell command that receives the JSON event on stdin (also "
            "$CASSTORE_NOTIFY); if it fails (non-zero exit, not found, timed out) the move "
            "stands, a warning goes to stderr and into the JSON (notify_failures), and the "
            f"exit code is {EXIT_NOTIFY_FAILED}",
        )
        sp.add_argument(
            "--hook-timeout",
            type=positive_amount,
            metavar="SECONDS",
            help=f"time limit of each --pre-check, --health-check and --notify command "
            f"(default: {DEFAULT_CHECK_TIMEOUT:g} s for checks, or $CASSTORE_HEALTH_TIMEOUT; "
            f"{DEFAULT_NOTIFY_TIMEOUT:g} s for notify); a check that runs out fails",
        )

    def wait_opts(sp: Any) -> None:
        sp.add_argument(
            "--wait",
            action="store_true",
            help="return when every live follower serves the target (exit 1 if one has not "
            "by --timeout, at once if one reports it failed to load or check it, and when no "
            "follower is live unless --allow-no-followers)",
        )
        sp.add_argument("--timeout", type=amount, default=60.0, help="seconds for --wait")
        sp.add_argument(
            "--allow-no-followers",
            action="store_true",
            help="with --wait: no live follower is not an error",
        )

    sp = add("refs", cmd_refs, "list refs and where they point")
    sp.add_argument("model")

    sp = add("reflog", cmd_reflog, "history of ref moves")
    sp.add_argument("model")
    sp.add_argument("--ref", help="only this ref")
    sp.add_argument("--at", help="what each ref pointed at then: " + WHEN_HELP)

    for name, fn, helptext in (
        ("promote", cmd_promote, "point a ref at a version (progressive with --steps)"),
        ("rollback", cmd_rollback, "roll a ref back: --previous-stable, --to VERSION or --undo"),
    ):
        sp = add(name, fn, helptext)
        sp.add_argument("model")
        if name == "promote":
            sp.add_argument("version", help=VERSION_FORMS)
        else:
            sp.add_argument(
                "--to", help="targeted rollback: exactly this version (any version form)"
            )
            sp.add_argument(
                "--previous-stable",
                action="store_true",
                help="quick rollback to " + PREVIOUS_STABLE_RULE.replace("%", "%%"),
            )
            sp.add_argument(
                "--undo",
                action="store_true",
                help="revert the ref's last move, whatever it was: point it back where that "
                "move (the newest reflog entry) found it; undoing twice redoes",
            )
        ref_opts(sp)
        wait_opts(sp)
        sp.add_argument("--verify", action="store_true",
                        help="check every chunk of the target exists first")
        sp.add_argument("--verify-data", action="store_true", help="re-hash every chunk first")
        sp.add_argument(
            "--pre-check",
            metavar="CMD",
            help="shell command run against the target BEFORE the ref moves; non-zero exit "
            "refuses the move (exit 1, ref untouched). " + HOOK_ENV_HELP,
        )
        sp.add_argument(
            "--health-check",
            metavar="CMD",
            help="shell command run AFTER the ref moves; non-zero exit switches it back "
            "(exit 1). Same environment as --pre-check",
        )
        sp.add_argument("--steps", help="progressive: " + STEPS_HELP)
        sp.add_argument(
            "--replica",
            action="append",
            default=[],
            metavar="URL",
            help="also switch the ref in this store (checked first; all or none)",
        )

    sp = add("advance", cmd_advance, "move a progressive split to its next step")
    sp.add_argument("model")
    sp.add_argument(
        "--weight", help="explicit next weight: a percent (50, 5%%) or a fraction (0.5)"
    )
    ref_opts(sp)
    wait_opts(sp)

    sp = add("abort", cmd_abort, "end a progressive split, back to its base version")
    sp.add_argument("model")
    ref_opts(sp)
    wait_opts(sp)

    sp = add("resolve", cmd_resolve, "which version a ref sends a request key to")
    sp.add_argument("model")
    sp.add_argument("--ref", default="current")
    sp.add_argument("--key", help="request key (sticky within a split)")

    sp = add("check", cmd_check, "apply a regression policy; roll back or refuse on violation")
    sp.add_argument("model")
    sp.add_argument("--policy", required=True,
                    help='regression policy JSON file, {"rules": [{"metric": ..., '
                    '"direction": "higher"|"lower", "threshold": ..., ...}]}: every field is '
                    "in the README's 'Regression policy' (and in a bad policy's error)")
    sp.add_argument("--candidate", help="version to judge (default: what the ref points at)")
    sp.add_argument(
        "--metric",
        "-m",
        action="append",
        default=[],
        help="observed metric NAME=NUMBER overriding the recorded one",
    )
    sp.add_argument("--dry-run", action="store_true", help="judge only, move nothing")
    ref_opts(sp)
