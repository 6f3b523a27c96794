"""The casstore command line: parse -> Repository -> render. All output lives here."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from casstore import errors
from casstore.cli._render import ProgressBar, emit_json, human_bytes, table

EXIT_CODES: list[tuple[type[BaseException], int]] = [
    (errors.InvalidInputError, 2),
    (errors.NotFoundError, 3),
    (errors.AlreadyExistsError, 4),
    (errors.ConflictError, 4),
    (errors.CorruptObjectError, 5),
    (errors.StoreFormatError, 6),
    (errors.UnsupportedError, 6),
    (errors.BackendError, 7),
    (errors.CasstoreError, 1),
]

DEFAULT_STORE = ".casstore"


def store_url(args: argparse.Namespace) -> str:
    return getattr(args, "store", None) or os.environ.get("CASSTORE_STORE") or DEFAULT_STORE


def open_repo(args: argparse.Namespace) -> Any:
    from casstore.repository import Repository

    return Repository(store_url(args))


# -- commands ------------------------------------------------------------------------------
def cmd_init(args: argparse.Namespace) -> int:
    from casstore.chunking import make_chunker
    from casstore.repo.config import StoreConfig, replace_config

    repo = open_repo(args)
    chunker = make_chunker(args.chunker, max_chunk=args.max_chunk, cdc_avg=args.cdc_avg).name
    cfg = StoreConfig(chunker=chunker, single_writer=args.single_writer)
    if repo.exists:
        cfg = cfg.model_copy(update={"created_at": repo.config.created_at})
        replace_config(repo.store, cfg)
        repo = open_repo(args)
    else:
        repo.init(cfg)
    doc = {"store": repo.store.url, **repo.config.model_dump(mode="json")}
    if args.json:
        emit_json(doc)
    else:
        print(f"casstore store at {repo.store.url}")
        print(f"  chunker: {repo.config.chunker}")
        print(f"  single writer: {repo.config.single_writer}")
    return 0


def _parse_kv_floats(items: Sequence[str]) -> dict[str, float]:
    out = {}
    for item in items:
        k, sep, v = item.partition("=")
        try:
            if not sep or not k:
                raise ValueError
            out[k] = float(v)
        except ValueError:
            raise errors.InvalidInputError(f"bad metric {item!r}: expected NAME=NUMBER") from None
    return out


def _training_data(args: argparse.Namespace) -> dict[str, Any] | None:
    import json

    if not args.training_data:
        return None
    text = args.training_data
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise errors.InvalidInputError(f"cannot read {text[1:]}: {e.strerror}") from e
    try:
        data = json.loads(text)
    except ValueError as e:
        raise errors.InvalidInputError(f"--training-data is not JSON: {e}") from e
    if not isinstance(data, dict):
        raise errors.InvalidInputError("--training-data must be a JSON object")
    return data


def cmd_commit(args: argparse.Namespace) -> int:
    from casstore.repo.inputs import collect

    repo = open_repo(args)
    total = sum(p.stat().st_size for _, p in collect(args.paths))
    bar = ProgressBar(total, f"commit {args.model}") if not args.json else None
    try:
        res = repo.commit(
            args.model,
            args.paths,
            version=args.version,
            bump_part=args.bump,
            version_type=args.type,
            metrics=_parse_kv_floats(args.metric),
            training_data=_training_data(args),
            change_log=args.message or "",
            tags=args.tag,
            dependencies=args.depends,
            parent=args.parent,
            ref=args.ref,
            reason=args.reason or "",
            progress=bar,
        )
    finally:
        if bar:
            bar.close()
    if args.json:
        emit_json(res.to_dict())
        return 0
    d = res.to_dict()
    rate = d["logical_bytes"] / max(d["seconds"], 1e-9)
    print(f"committed {d['name']}  id {d['id'][:12]}")
    print(
        f"  {human_bytes(d['logical_bytes'])} in {d['chunks']} chunks, "
        f"{human_bytes(d['new_bytes'])} new in {d['new_chunks']} chunks "
        f"({human_bytes(rate)}/s)"
    )
    if d["ref"]:
        print(f"  {d['ref']} -> {d['version']}")
    return 0


def _version_row(v: Any) -> list[Any]:
    m = v.manifest
    metrics = " ".join(f"{k}={val:g}" for k, val in sorted(m.performance_metrics.items()))
    return [
        m.version,
        m.name,
        m.version_type,
        f"{m.created_at:%Y-%m-%d %H:%M:%S}",
        human_bytes(m.size_bytes),
        ",".join(v.tags),
        metrics,
    ]


_VERSION_HEADER = ["version", "name", "type", "created (UTC)", "size", "tags", "metrics"]


def cmd_log(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    versions = repo.history(args.model)
    refs = {}
    try:
        refs = repo.refs.list(args.model)
    except errors.NotFoundError:
        pass
    if args.json:
        emit_json(
            {
                "model": args.model,
                "versions": [v.to_dict() for v in versions],
                "refs": {k: r.value.describe() for k, r in refs.items()},
            }
        )
        return 0
    pointers: dict[str, list[str]] = {}
    for name, rec in refs.items():
        for t in rec.value.versions():
            pointers.setdefault(t.version, []).append(name)
    rows = [_version_row(v) + [",".join(pointers.get(v.version, []))] for v in versions]
    table(rows, [*_VERSION_HEADER, "refs"])
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    v = repo.get_version(args.model, args.version)
    d = v.to_dict(files=True)
    if args.json:
        emit_json(d)
        return 0
    for k in (
        "name",
        "id",
        "version_type",
        "created_at",
        "created_by",
        "parent",
        "size_bytes",
        "tags",
        "dependencies",
        "change_log",
        "performance_metrics",
        "training_data",
    ):
        val = d[k]
        if k == "size_bytes":
            val = f"{val} ({human_bytes(val)})"
        print(f"{k:20} {val}")
    table(
        [
            [f["path"], human_bytes(f["size"]), f["format"], f["chunks"], f["tensors"]]
            for f in d["files"]
        ],
        ["file", "size", "format", "chunks", "tensors"],
    )
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from casstore.repo.query import Query, parse_condition, parse_when

    q = Query(
        tags=args.tag,
        version_type=args.type,
        where=[parse_condition(c) for c in args.where],
        since=parse_when(args.since) if args.since else None,
        until=parse_when(args.until, end=True) if args.until else None,
    )
    repo = open_repo(args)
    found = repo.query(args.model, q)
    if args.json:
        emit_json({"versions": [v.to_dict() for v in found]})
        return 0
    table([[v.model, *_version_row(v)] for v in found], ["model", *_VERSION_HEADER])
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    c = repo.compare(args.model, args.a, args.b)
    if args.json:
        emit_json(c.to_dict())
        return 0
    print(f"{c.a} -> {c.b}")
    for k, (x, y) in c.metadata.items():
        print(f"  {k}: {x!r} -> {y!r}")
    for k, m in c.metrics.items():
        delta = "" if m["delta"] is None else f" ({m['delta']:+g})"
        print(f"  metric {k}: {m['a']} -> {m['b']}{delta}")
    for f in c.files:
        line = f"  {f.status:9} {f.path}"
        if f.tensors:
            t = f.tensors
            line += f"  tensors: +{len(t.added)} -{len(t.removed)} ~{len(t.changed)} ={t.unchanged}"
        print(line)
        if f.tensors and args.tensors:
            for name in f.tensors.changed:
                print(f"      ~ {name}")
            for name in f.tensors.added:
                print(f"      + {name}")
            for name in f.tensors.removed:
                print(f"      - {name}")
    print(f"  bytes shared {human_bytes(c.bytes_shared)}, new {human_bytes(c.bytes_new)}")
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    v = (repo.untag if args.remove else repo.tag)(args.model, args.version, *args.tags)
    if args.json:
        emit_json({"model": v.model, "version": v.version, "tags": list(v.tags)})
    else:
        print(f"{v.name}: tags {', '.join(v.tags) or '(none)'}")
    return 0


def cmd_checkout(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    v = repo.get_version(args.model, args.version)
    paths = repo.checkout(args.model, v.version, args.output)
    if args.json:
        emit_json(
            {
                "model": v.model,
                "version": v.version,
                "name": v.name,
                "files": [str(p) for p in paths],
            }
        )
    else:
        print(f"checked out {v.name} ({len(paths)} files) to {args.output}")
    return 0


def cmd_cat(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    f = repo.open_file(args.model, args.version, args.path)
    out = sys.stdout.buffer
    while True:
        block = f.read(8 << 20)
        if not block:
            break
        out.write(block)
    out.flush()
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    st = repo.stats(args.model)
    d = st.to_dict()
    if args.json:
        emit_json(d)
        return 0
    print(f"models {d['models']}  versions {d['versions']}  chunks {d['chunks']}")
    print(
        f"logical {human_bytes(d['logical_bytes'])}  stored {human_bytes(d['stored_bytes'])}  "
        f"dedup {d['dedup_ratio']:.2f}x  saved {human_bytes(d['saved_bytes'])}"
    )
    table(
        [
            [
                m,
                s["versions"],
                human_bytes(s["logical_bytes"]),
                human_bytes(s["unique_bytes"]),
                f"{s['dedup_ratio']:.2f}x",
            ]
            for m, s in d["per_model"].items()
        ],
        ["model", "versions", "logical", "unique", "dedup"],
    )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    names = repo.models()
    if args.json:
        emit_json({"models": names})
    else:
        for n in names:
            print(n)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from casstore.cli.demo import run_demo

    return run_demo(store_url(args), size_mb=args.size_mb, as_json=args.json)


# -- parser --------------------------------------------------------------------------------
def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--store",
        default=argparse.SUPPRESS,
        help="store URL or folder (default: $CASSTORE_STORE, then ./.casstore)",
    )
    p.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON document"
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    p = argparse.ArgumentParser(
        prog="casstore",
        parents=[common],
        description="Content-addressed, deduplicated model versions.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str) -> Any:
        sp = sub.add_parser(name, parents=[common], help=help, description=help)
        sp.set_defaults(func=fn)
        return sp

    sp = add("init", cmd_init, "create a store or change its settings")
    sp.add_argument("--chunker", choices=["tensor", "fastcdc", "fixed"], default="tensor")
    sp.add_argument("--max-chunk", type=int, default=16 << 20, help="max chunk bytes")
    sp.add_argument("--cdc-avg", type=int, default=64 << 10, help="FastCDC average bytes")
    sp.add_argument(
        "--single-writer",
        action="store_true",
        help="allow ref moves on backends without conditional writes",
    )

    sp = add("commit", cmd_commit, "store files or folders as a new version")
    sp.add_argument("model")
    sp.add_argument("paths", nargs="+")
    sp.add_argument("--version", help="explicit MAJOR.MINOR.PATCH (default: bump)")
    sp.add_argument("--bump", choices=["major", "minor", "patch"], default="patch")
    sp.add_argument("--type", choices=["release", "beta", "alpha"], default="release")
    sp.add_argument("--metric", "-m", action="append", default=[], help="NAME=NUMBER")
    sp.add_argument("--training-data", help="JSON object or @file.json")
    sp.add_argument("--message", "--change-log", help="change log text")
    sp.add_argument("--tag", "-t", action="append", default=[])
    sp.add_argument("--depends", action="append", default=[], help="dependency")
    sp.add_argument("--parent", help="parent version (default: current)")
    sp.add_argument("--ref", help="move this ref to the new version")
    sp.add_argument("--reason", help="reason recorded in the reflog")

    sp = add("log", cmd_log, "history of a model")
    sp.add_argument("model")

    sp = add("show", cmd_show, "show one version")
    sp.add_argument("model")
    sp.add_argument("version", nargs="?", default="@current")

    sp = add("query", cmd_query, "find versions by tag, type, metrics and date")
    sp.add_argument("model", nargs="?")
    sp.add_argument("--tag", "-t", action="append", default=[])
    sp.add_argument("--type", choices=["release", "beta", "alpha"])
    sp.add_argument("--where", "-w", action="append", default=[], help="e.g. accuracy>=0.9")
    sp.add_argument("--since", help="YYYY-MM-DD or ISO datetime")
    sp.add_argument("--until", help="YYYY-MM-DD or ISO datetime")

    sp = add("diff", cmd_diff, "compare two versions")
    sp.add_argument("model")
    sp.add_argument("a")
    sp.add_argument("b")
    sp.add_argument("--tensors", action="store_true", help="list changed tensor names")

    sp = add("tag", cmd_tag, "add tags to a version")
    sp.add_argument("model")
    sp.add_argument("version")
    sp.add_argument("tags", nargs="+")
    sp.set_defaults(remove=False)

    sp = add("untag", cmd_tag, "remove tags from a version")
    sp.add_argument("model")
    sp.add_argument("version")
    sp.add_argument("tags", nargs="+")
    sp.set_defaults(remove=True)

    sp = add("checkout", cmd_checkout, "write a version's files to a folder")
    sp.add_argument("model")
    sp.add_argument("version", nargs="?", default="@current")
    sp.add_argument("-o", "--output", required=True)

    sp = add("cat", cmd_cat, "stream one file of a version to stdout")
    sp.add_argument("model")
    sp.add_argument("version")
    sp.add_argument("path", nargs="?")

    sp = add("stats", cmd_stats, "logical vs stored bytes, dedup ratio")
    sp.add_argument("model", nargs="?")

    add("models", cmd_models, "list models")

    sp = add("demo", cmd_demo, "commit versions, show savings, roll back, collect garbage")
    sp.add_argument("--size-mb", type=int, default=64, help="size of the demo model")

    from casstore.cli.maint import add_maintenance_commands
    from casstore.cli.refs import add_ref_commands
    from casstore.cli.remote import add_remote_commands
    from casstore.cli.serve import add_serve_commands
    from casstore.cli.tune import add_tune_command

    add_ref_commands(add)
    add_maintenance_commands(add)
    add_tune_command(add)
    add_remote_commands(add)
    add_serve_commands(add)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "json"):
        args.json = False
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("casstore: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except errors.CasstoreError as e:
        print(f"casstore: error: {e}", file=sys.stderr)
        for cls, code in EXIT_CODES:
            if isinstance(e, cls):
                return code
        return 1  # pragma: no cover
    except OSError as e:
        print(f"casstore: error: {e}", file=sys.stderr)
        return 7


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
