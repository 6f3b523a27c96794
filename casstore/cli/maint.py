"""CLI commands that maintain a store: rm, gc, policy, verify, repair."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from casstore.cli import _shapes as shapes
from casstore.cli._common import (
    VERSION_FORMS,
    AddCommand,
    byte_size,
    count,
    open_repo,
    parse_duration,
)
from casstore.cli._render import emit_json, human_bytes, plain, table


def _policy_from_args(args: argparse.Namespace) -> Any:
    from casstore.ops.retention import RetentionPolicy

    given: dict[str, Any] = {}
    for name in ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly"):
        if getattr(args, name) is not None:
            given[name] = getattr(args, name)
    if args.keep_within is not None:
        given["keep_within_seconds"] = parse_duration(args.keep_within)
    if args.keep_reflog is not None:
        given["keep_reflog_seconds"] = parse_duration(args.keep_reflog)
    if args.keep_tag:
        given["keep_tags"] = tuple(args.keep_tag)
    if args.keep_type:
        given["keep_types"] = tuple(args.keep_type)
    if args.keep_best:
        metric, _, direction = args.keep_best.partition(":")
        given["keep_best"] = metric
        given["keep_best_lower"] = direction == "min"
    given.update(_auto_gc_from_args(args))
    if not given:
        return None
    from casstore.errors import InvalidInputError
    from casstore.records import ValidationError

    try:
        return RetentionPolicy.parse(given)
    except ValidationError as e:
        raise InvalidInputError(f"bad retention policy: {e}") from None


def _auto_gc_from_args(args: argparse.Namespace) -> dict[str, Any]:
    given: dict[str, Any] = {}
    auto = getattr(args, "auto_gc", None)
    if auto is not None:
        try:
            given["auto_gc_bytes"] = None if auto.strip().lower() == "off" else byte_size(auto)
        except argparse.ArgumentTypeError as e:
            from casstore.errors import InvalidInputError

            raise InvalidInputError(f"--auto-gc: {e}") from None
    if getattr(args, "auto_gc_grace", None) is not None:
        given["auto_gc_grace_seconds"] = parse_duration(args.auto_gc_grace)
    if getattr(args, "auto_gc_interval", None) is not None:
        given["auto_gc_interval_seconds"] = parse_duration(args.auto_gc_interval)
    return given


def cmd_gc(args: argparse.Namespace) -> int:
    from casstore.ops.gc import GarbageCollector

    repo = open_repo(args)
    gc = GarbageCollector(repo.ctx, grace_seconds=parse_duration(args.grace))
    plan = gc.plan(_policy_from_args(args), args.model or None)
    doc: dict[str, Any] = {"dry_run": args.dry_run, "plan": plan.to_dict()}
    if not args.dry_run:
        def waiting(n: int) -> None:
            if not args.json and sys.stderr.isatty():
                print(f"\rwaiting for {n} in-flight writes...", end="", file=sys.stderr)

        report = gc.execute(plan, on_wait=waiting)
        doc["report"] = report.to_dict()
    if args.json:
        emit_json(doc)
        return 0
    p = doc["plan"]
    print(f"{'would expire' if args.dry_run else 'expired'} {p['versions_expired']} versions, "
          f"kept {p['versions_kept']}")
    for e in plan.expire:
        print(f"  - {e.model} v{e.version}")
    if args.dry_run:
        print(f"would delete {p['chunks_to_delete']} chunks, {p['manifests_to_delete']} orphan "
              f"manifests, {p['tmp_to_delete']} temp files: {human_bytes(p['bytes_freed'])}")
    else:
        r = doc["report"]
        print(f"deleted {r['objects_deleted']} objects ({r['chunks_deleted']} chunks), freed "
              f"{human_bytes(r['bytes_freed'])} in {r['seconds']:.2f}s")
        if r["skipped"]:
            print(f"  {len(r['skipped'])} planned items were no longer garbage and were kept")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    from casstore.ops.remove import remove

    repo = open_repo(args)
    out = remove(repo.ctx, args.model, args.versions, dry_run=args.dry_run)
    if args.json:
        emit_json(shapes.with_model_name(out.to_dict()))
        return 0
    verb = "would remove" if args.dry_run else "removed"
    for e in out.versions:
        print(f"{verb} {e.model} v{e.version}")
    if not args.dry_run:
        print("their unique chunks are reclaimed by the next `casstore gc` (after --grace)")
    return 0


def cmd_policy(args: argparse.Namespace) -> int:
    from casstore.ops.retention import load_policy, save_policy

    repo = open_repo(args, create=args.action == "set")
    model = args.model
    if args.action == "set":
        policy = _policy_from_args(args)
        if policy is None:
            from casstore.errors import InvalidInputError

            raise InvalidInputError("give at least one --keep-* rule or --auto-gc")
        if not repo.exists:
            repo.init()
        existing = load_policy(repo.store, model)
        if policy.is_empty() and existing is not None:  # only auto-gc options: keep the rules
            policy = existing.merged(policy)
        save_policy(repo.store, model, policy)
    policy = load_policy(repo.store, model)
    doc = {"model_name": model, "policy": None if policy is None else
           policy.to_builtins()}
    if args.json:
        emit_json(doc)
    else:
        rules = "; ".join(f"{k}={plain(v, ',')}" for k, v in (doc["policy"] or {}).items())
        print(f"retention policy for {model or 'the store (default)'}: {rules or 'none'}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from casstore.ops.verify import verify

    repo = open_repo(args)
    report = verify(repo.ctx, read_data=args.read_data)
    if args.json:
        emit_json(report.to_dict())
    else:
        d = report.to_dict()
        print(f"checked {d['models']} models, {d['versions']} versions, {d['refs']} refs, "
              f"{d['reflog_entries']} reflog entries, {d['chunks']} chunks"
              + (f", read {human_bytes(d['bytes_read'])}" if args.read_data else "")
              + f" in {d['seconds']:.2f}s")
        if report.ok:
            print("ok: no problems")
        else:
            table([[p.kind, p.object[:40], ",".join(p.versions), p.detail]
                   for p in report.problems], ["problem", "object", "versions", "detail"])
    return 0 if report.ok else 1


def cmd_repair(args: argparse.Namespace) -> int:
    from casstore.ops.verify import repair
    from casstore.store import open_store

    repo = open_repo(args)
    source = open_store(args.source)
    out = repair(repo.ctx, source)
    if args.json:
        emit_json(out.to_dict())
    else:
        print(f"repaired {len(out.repaired)} objects; {len(out.unrepairable)} could not be")
        for x in out.unrepairable:
            print(f"  - {x}")
        print("verify after repair: " + ("ok" if out.after and out.after.ok else "PROBLEMS"))
    return 0 if out.after is not None and out.after.ok else 1


def _retention_args(sp: Any) -> None:
    sp.add_argument("--keep-last", type=count, help="keep the N newest versions")
    sp.add_argument("--keep-within", help="keep versions newer than a duration (e.g. 30d)")
    for p in ("hourly", "daily", "weekly", "monthly"):
        sp.add_argument(f"--keep-{p}", type=count, help=f"keep one version for each of N {p} "
                        "periods")
    sp.add_argument("--keep-best", help="periodic rules keep the best by METRIC[:max|min]")
    sp.add_argument("--keep-tag", action="append", default=[], help="keep versions with a tag")
    sp.add_argument("--keep-type", action="append", default=[],
                    choices=["release", "beta", "alpha"], help="keep versions of a type")
    sp.add_argument("--keep-reflog", help="keep what refs pointed at within a duration (0: "
                    "only what they point at now; default 7d)")


def add_parser(add: AddCommand) -> None:
    """Add the maintenance commands."""
    sp = add("gc", cmd_gc, "expire versions by retention policy and reclaim unused chunks")
    sp.add_argument("--dry-run", action="store_true", help="only print the plan")
    sp.add_argument("--grace", default="1h", help="never delete objects younger than this")
    sp.add_argument("--model", action="append", default=[], help="only collect these models")
    _retention_args(sp)

    sp = add("rm", cmd_rm, "delete versions (refused while a ref points at one)")
    sp.add_argument("model")
    sp.add_argument("versions", nargs="+", help="versions to delete: " + VERSION_FORMS)
    sp.add_argument("--dry-run", action="store_true", help="only check and list them")

    sp = add("policy", cmd_policy, "show or set a retention policy (per model or store-wide)")
    sp.add_argument("action", choices=["show", "set"])
    sp.add_argument("--model", help="the model (default: the store-wide default)")
    _retention_args(sp)
    sp.add_argument("--auto-gc", metavar="SIZE|off",
                    help="after a commit, collect once the policy would free SIZE (e.g. 1GB; "
                    "0: any garbage); off turns it off")
    sp.add_argument("--auto-gc-grace", help="grace of automatic collections (default 1h)")
    sp.add_argument("--auto-gc-interval", help="check at most this often per model (default "
                    "10m; each check plans a GC: O(history) requests)")

    sp = add("verify", cmd_verify, "check refs, reflog, manifests and chunks")
    sp.add_argument("--read-data", action="store_true", help="re-hash every chunk")

    sp = add("repair", cmd_repair, "restore missing or corrupt objects from a replica")
    sp.add_argument("--from", dest="source", required=True, help="replica store URL")
