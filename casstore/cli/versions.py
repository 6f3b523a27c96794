"""Commands on versions: init, commit, log, show, query, diff, tag, untag, checkout, cat,
stats, models."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from casstore import errors
from casstore.cli import _shapes as shapes
from casstore.cli._common import (
    VERSION_FORMS,
    AddCommand,
    count,
    open_repo,
    parse_metrics,
    parse_params,
    parse_training_data,
    positive_count,
)
from casstore.cli._render import (
    SIGNATURE_HEADER,
    ProgressBar,
    emit_json,
    human_bytes,
    plain,
    signature_rows,
    table,
)
from casstore.repo.times import WHEN_HELP


def cmd_init(args: argparse.Namespace) -> int:
    from casstore.chunking import make_chunker
    from casstore.repo.config import StoreConfig

    repo = open_repo(args, create=True)
    chunker = make_chunker(args.chunker, max_chunk=args.max_chunk, cdc_avg=args.cdc_avg).name
    cfg = StoreConfig(chunker=chunker, single_writer=args.single_writer)
    if args.encoding is not None:
        cfg = cfg.replace(encoding=args.encoding)
    changes: dict[str, dict[str, Any]] = {}
    if repo.exists:
        old = repo.config
        cfg = cfg.replace(
            created_at=old.created_at, conditional_writes=old.conditional_writes,
            encoding=args.encoding or old.encoding,  # kept unless asked to change
        )
        changes = {
            k: {"old": getattr(old, k), "new": getattr(cfg, k)}
            for k in ("chunker", "encoding", "single_writer")
            if getattr(old, k) != getattr(cfg, k)
        }
        if "chunker" in changes and not args.force:
            what = "; ".join(f"{k}: {c['old']} -> {c['new']}" for k, c in changes.items())
            raise errors.InvalidInputError(
                f"{repo.store.url} exists; init would change {what}. Changing the chunker "
                "makes new versions share fewer chunks with stored ones; rerun with --force "
                "to change it"
            )
        if changes:
            repo.ctx.replace_config(cfg)
    else:
        repo.init(cfg)
    doc = {"store": repo.store.url, **repo.config.to_builtins(), "changes": changes}
    if args.json:
        emit_json(doc)
    else:
        for k, c in changes.items():
            print(f"changed {k}: {plain(c['old'])} -> {plain(c['new'])}")
        print(f"casstore store at {repo.store.url}")
        print(f"  chunker: {repo.config.chunker}")
        print(f"  encoding: {repo.config.encoding}")
        print(f"  single writer: {repo.config.single_writer}")
    return 0


def cmd_commit(args: argparse.Namespace) -> int:
    from casstore.repo.inputs import collect

    repo = open_repo(args, create=True)
    total = sum(p.stat().st_size for _, p in collect(args.paths))
    bar = ProgressBar(total, f"commit {args.model}") if not args.json else None
    try:
        res = repo.commit(
            args.model,
            args.paths,
            version=args.version,
            bump_part=args.bump,
            version_type=args.type,
            metrics=parse_metrics(args.metric),
            params=parse_params(args.param),
            allow_globals=args.allow_global,
            lineage={"run_id": args.run_id, "dataset": args.dataset,
                     "dataset_version": args.dataset_version},
            training_data=parse_training_data(args.training_data),
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
    if res.ref_error:  # the commit succeeded; say plainly that the ref did not move
        print(f"casstore: warning: {res.ref_error}", file=sys.stderr)
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
    if res.auto_gc is not None:
        print(f"  {res.auto_gc.describe()}")
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


def _screenful() -> int | None:
    """How many versions ``log`` shows by default: a screenful on a terminal, else all."""
    if not sys.stdout.isatty():
        return None
    import shutil

    return max(5, shutil.get_terminal_size((80, 24)).lines - 4)


def cmd_log(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    limit = args.limit
    if limit is None and not (args.all or args.json):
        limit = _screenful()
    versions = repo.log(args.model, limit)
    refs = {}
    try:
        refs = repo.refs.list(args.model)
    except errors.NotFoundError:
        pass
    if args.json:
        emit_json(
            {
                "model_name": args.model,
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
    if args.version is not None:
        v = repo.get_version(args.model, args.version)
    else:  # what current serves, else (a pulled store has no current) the newest, saying so
        try:
            v = repo.get_version(args.model, "@current")
        except errors.NotFoundError:
            v = repo.get_version(args.model, "latest")
            print(f"casstore: note: {args.model} has no ref 'current'; showing latest "
                  f"({v.version})", file=sys.stderr)
    d = v.to_dict(files=True)
    st = repo.storage(v).to_dict()
    d["storage"] = st
    try:
        sigs = repo.signatures(args.model, v.version)  # checked against the trusted keys
    except errors.UntrustedError as e:  # a broken trust policy: list them, trusting none
        sigs = repo.signatures(args.model, v.version, [])
        d["trust_policy_error"] = str(e)
    d["signatures"] = [s.to_dict() for s in sigs]
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
        "params",
        "lineage",
        "training_data",
    ):
        val = d[k]
        if k == "lineage":
            val = " ".join(f"{n}={x}" for n, x in val.items() if x is not None)
            if not val:
                continue
        if k == "params":
            if not val:
                continue
            val = " ".join(f"{n}={x}" for n, x in sorted(val.items()))
        if k == "size_bytes":
            val = f"{val} ({human_bytes(val)})"
        print(f"{k:20} {plain(val)}")
    table(
        [
            [f["path"], human_bytes(f["size"]), f["format"], f["chunks"], f["tensors"]]
            for f in d["files"]
        ],
        ["file", "size", "format", "chunks", "tensors"],
    )
    print(_storage_line(st))
    if sigs:
        print()
        table(signature_rows(sigs), SIGNATURE_HEADER)
    else:
        print("\nnot signed")
    if "trust_policy_error" in d:
        print(f"trust policy: {d['trust_policy_error']}")
    return 0


def _storage_line(st: dict[str, Any]) -> str:
    encodings = ", ".join(f"{n} {k}" for k, n in st["encodings"].items()) or "none"
    line = (f"stored as {human_bytes(st['stored_bytes'])} for {human_bytes(st['chunk_bytes'])} "
            f"of chunks ({st['stored_vs_chunk_bytes']:.2f}x): {st['objects']} objects "
            f"({encodings}), {st['inline_chunks']} inline")
    if st["delta_objects"]:
        line += (f"; {st['delta_objects']} deltas need {st['delta_bases']} chunks of other "
                 f"versions, chains up to {st['longest_chain']}")
    return line


def cmd_query(args: argparse.Namespace) -> int:
    from casstore.repo.query import Query, parse_condition, parse_order
    from casstore.repo.times import parse_when

    q = Query(
        tags=args.tag,
        version_type=args.type,
        where=[parse_condition(c) for c in args.where],
        since=parse_when(args.since) if args.since else None,
        until=parse_when(args.until, end=True) if args.until else None,
        order=parse_order(args.order_by) if args.order_by else None,
        limit=args.limit,
    )
    repo = open_repo(args)
    found = repo.query(args.model, q)
    if args.json:
        emit_json({"versions": [v.to_dict() for v in found]})
        return 0
    table([[v.model, *_version_row(v)] for v in found], ["model", *_VERSION_HEADER])
    return 0


def _change_text(t: Any) -> str:
    shape = "x".join(map(str, t.shape_b)) or "scalar"
    if (t.dtype_a, t.shape_a) != (t.dtype_b, t.shape_b):
        old = "x".join(map(str, t.shape_a)) or "scalar"
        return f"{t.dtype_a} {old} -> {t.dtype_b} {shape}"
    if t.max_abs_diff is None:
        return f"{t.dtype_b} {shape} ({t.note})"
    return (f"{t.dtype_b} {shape}  max abs diff {t.max_abs_diff:.4g}  "
            f"relative L2 change {t.rel_l2:.4g}")


def cmd_diff(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    c = repo.compare(args.model, args.a, args.b, tensors=args.tensors)
    if args.json:
        emit_json(c.to_dict())
        return 0
    numbers = {(t.file_b, t.name): _change_text(t) for t in c.tensor_changes or []}
    print(f"{c.a} -> {c.b}")
    for k, (x, y) in c.metadata.items():
        print(f"  {k}: {plain(x)} -> {plain(y)}")
    for k, m in c.metrics.items():
        delta = "" if m["delta"] is None else f" ({m['delta']:+g})"
        print(f"  metric {k}: {m['a']} -> {m['b']}{delta}")
    for f in c.files:
        line = f"  {f.status:9} {f.path}" + (
            f" (was {f.renamed_from})" if f.renamed_from else ""
        )
        if f.tensors:
            t = f.tensors
            line += f"  tensors: +{len(t.added)} -{len(t.removed)} ~{len(t.changed)} ={t.unchanged}"
        print(line)
        if f.tensors and args.tensors:
            for name in f.tensors.changed:
                print(f"      ~ {name}  {numbers.get((f.path, name), '')}".rstrip())
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
        emit_json(shapes.version_summary(v) | {"tags": list(v.tags)})
    else:
        print(f"{v.name}: tags {', '.join(v.tags) or '(none)'}")
    return 0


def cmd_checkout(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    v = repo.get_version(args.model, args.version)
    paths = repo.checkout(
        args.model,
        v.version,
        args.output,
        overwrite=args.force,
        with_signature=args.with_signature or False,
    )
    if args.json:
        emit_json(
            shapes.version_summary(v) | {"files": [str(p) for p in paths]}
        )
    else:
        print(f"checked out {v.name} ({len(paths)} files) to {args.output}")
    return 0


def cmd_cat(args: argparse.Namespace) -> int:
    if args.json:
        raise errors.InvalidInputError(
            "cat writes the file's bytes to stdout and has no --json form; "
            "use show --json for a version's metadata"
        )
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
    if args.recount and args.exact:
        raise errors.InvalidInputError("use --exact (scan, save nothing) or --recount (scan and "
                                       "save as the counters' new base), not both")
    repo = open_repo(args)
    st = repo.stats(args.model, exact=args.exact, recount=args.recount)
    d = st.to_dict()
    for c in d["approximate"]:
        c["message"] = _caveat(c)
    if args.json:
        emit_json(d)
        return 0
    if d["exact"]:
        how = "exact: scanned just now"
    elif d["counted_at"] is None:
        how = "from counters kept since the store began; --exact scans the store"
    else:
        how = (f"from counters: the count of the last gc/rm at {_utc(d['counted_at'])} plus "
               "the commits since; --exact scans the store")
    print(f"models {d['models']}  versions {d['versions']}  ({how})")
    if args.model is None:
        unused = (f", {d['unreferenced_chunks']} unreferenced (with orphan manifests "
                  f"{human_bytes(d['unreferenced_bytes'])}; gc reclaims them after its grace "
                  "period)" if d["unreferenced_bytes"] else "")
        print(f"chunks {d['chunks']} in the store: {d['used_chunks']} used by live versions"
              f"{unused}")
    else:
        print(f"model {args.model}: {d['chunks']} chunks used by its live versions")
    print(
        f"logical {human_bytes(d['logical_bytes'])}  stored {human_bytes(d['stored_bytes'])}  "
        f"dedup {d['dedup_ratio']:.2f}x  saved {human_bytes(d['saved_bytes'])}"
    )
    enc = d["saved_by_encoding"]
    enc_text = (f"by encoding {human_bytes(enc)}" if enc >= 0
                else f"by encoding nothing (object headers add {human_bytes(-enc)})")
    print(
        f"saved by dedup {human_bytes(d['saved_by_dedup'])} ({human_bytes(d['unique_bytes'])} "
        f"unique)  {enc_text}; used chunks stored in {human_bytes(d['encoded_bytes'])}"
    )
    table(
        [
            [
                m,
                s["versions"],
                human_bytes(s["logical_bytes"]),
                s["chunks"],
                human_bytes(s["unique_bytes"]),
                human_bytes(s["stored_bytes"]),
                f"{s['dedup_ratio']:.2f}x",
            ]
            for m, s in d["per_model"].items()
        ],
        ["model", "versions", "logical", "chunks", "unique", "stored", "dedup"],
    )
    if len(d["per_model"]) > 1:
        print("per model: the chunks its live versions use (what `stats MODEL` shows); a chunk "
              "models share counts in each of their rows and once in the store line")
    for c in d["approximate"]:
        print(f"approximate: {c['message']}")
    return 0


def _utc(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _caveat(c: dict[str, Any]) -> str:
    """What a counted figure may get wrong, and by how much at most (see repo.stats)."""
    fix = "gc, rm or `stats --recount` counts exactly again"
    if c["kind"] == "found":
        models = ", ".join(c["models"])
        return (f"{c['chunks']} chunks ({human_bytes(c['bytes'])}) that commits or transfers of "
                f"{models} found already stored, outside the versions they derive from, count "
                f"as new to {models} and not to the store line: either may be off by up to "
                "that (if an older version of the same model uses them, they were awaiting "
                "gc, or the ranks of a distributed checkpoint staged them); stored sizes not "
                "looked up are taken as their size; " + fix)
    if c["kind"] == "sweep":
        return (f"a gc/rm sweep started at {_utc(c['since'])} has not finished (still running, "
                "or killed): what it deleted may still be counted; run gc again")
    if c["kind"] == "rebuilt":
        return (f"the catalog of {', '.join(c['models'])} was rebuilt since the last count: "
                f"its commits since then are not counted; {fix}")
    parts = []
    if c["chunks"]:
        parts.append(f"{c['chunks']} chunk objects from before catalogs are counted in the "
                     "store line only")
    if c["deleted_chunks"]:
        parts.append(f"a gc by an earlier release deleted {c['deleted_chunks']} chunk objects: "
                     "the store line subtracts them, the model rows do not")
    if c["models"]:
        parts.append(f"commits of {', '.join(c['models'])} by an earlier release are counted "
                     "in the store line only")
    return "; ".join(parts) + f"; {fix}"


def cmd_models(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    names = repo.models()
    if args.json:
        emit_json({"models": names})
    else:
        for n in names:
            print(n)
    return 0


INIT_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("--chunker", {"choices": ["tensor", "fastcdc", "fixed"], "default": "tensor"}),
    ("--max-chunk", {"type": int, "default": 16 << 20, "help": "max chunk bytes"}),
    ("--cdc-avg", {"type": int, "default": 64 << 10, "help": "FastCDC average bytes"}),
    (
        "--encoding",
        {
            "choices": ["off", "fast", "max"],
            "help": "chunk encodings: off (raw, readable by casstore before encodings), fast "
            "(default for new stores: float-aware compression, deltas on local stores), max "
            "(fewest bytes, deltas on remote stores too); unchanged on an existing store "
            "unless given",
        },
    ),
    (
        "--single-writer",
        {
            "action": "store_true",
            "help": "allow ref moves on backends without conditional writes",
        },
    ),
]
"""The options of ``casstore init``, defined once (``casstore tune`` recommends only these)."""


def add_init_options(sp: argparse.ArgumentParser) -> None:
    for flag, kwargs in INIT_OPTIONS:
        sp.add_argument(flag, **kwargs)


def add_parser(add: AddCommand) -> None:
    """Add the version commands."""
    sp = add("init", cmd_init, "create a store or change its settings")
    add_init_options(sp)
    sp.add_argument("--force", action="store_true",
                    help="on an existing store, allow changing the chunker (init shows what "
                    "would change and refuses without it)")

    sp = add("commit", cmd_commit, "store files or folders as a new version")
    sp.add_argument("model")
    sp.add_argument("paths", nargs="+")
    sp.add_argument("--version", help="explicit MAJOR.MINOR.PATCH (default: bump)")
    sp.add_argument("--bump", choices=["major", "minor", "patch"], default="patch")
    sp.add_argument("--type", choices=["release", "beta", "alpha"], default="release")
    sp.add_argument("--metric", "-m", action="append", default=[], help="NAME=NUMBER")
    sp.add_argument("--param", "-p", action="append", default=[],
                    help="NAME=TEXT string hyperparameter (query with --where param.NAME=TEXT)")
    sp.add_argument("--allow-global", action="append", default=[], metavar="MODULE.NAME",
                    help="let .pt pickles name this global (e.g. argparse.Namespace); it is "
                    "never imported or called (default: tensors and containers only)")
    sp.add_argument("--run-id", help="lineage: the training run that produced this version")
    sp.add_argument("--dataset", help="lineage: the dataset's name")
    sp.add_argument("--dataset-version", help="lineage: the dataset's version")
    sp.add_argument("--training-data", help="JSON object or @file.json")
    sp.add_argument("--message", "--change-log", help="change log text")
    sp.add_argument("--tag", "-t", action="append", default=[])
    sp.add_argument("--depends", action="append", default=[], help="dependency")
    sp.add_argument("--parent", help="parent version (default: current)")
    sp.add_argument("--ref", help="move this ref to the new version")
    sp.add_argument("--reason", help="reason recorded in the reflog")

    sp = add("log", cmd_log, "history of a model, newest first")
    sp.add_argument("model")
    sp.add_argument("-n", "--limit", type=positive_count,
                    help="show the newest N versions (default: a screenful on a terminal)")
    sp.add_argument("--all", action="store_true", help="show every version")

    sp = add("show", cmd_show, "show one version")
    sp.add_argument("model")
    sp.add_argument("version", nargs="?",
                    help="default: @current, or latest (with a note) when there is no current; "
                    + VERSION_FORMS)

    sp = add("query", cmd_query, "find versions by tag, type, metrics and date")
    sp.add_argument("model", nargs="?")
    sp.add_argument("--tag", "-t", action="append", default=[])
    sp.add_argument("--type", choices=["release", "beta", "alpha"])
    sp.add_argument("--where", "-w", action="append", default=[],
                    help="e.g. accuracy>=0.9 or param.optimizer=adamw")
    sp.add_argument("--since", help="created at or after: " + WHEN_HELP)
    sp.add_argument("--until", help="created at or before: " + WHEN_HELP)
    sp.add_argument("--order-by", help="METRIC[:asc|desc] (default desc: highest first)")
    sp.add_argument("--limit", "-n", type=count, help="at most N versions")

    sp = add("diff", cmd_diff, "compare two versions")
    sp.add_argument("model")
    sp.add_argument("a", help="the old version: " + VERSION_FORMS)
    sp.add_argument("b", help="the new version (same forms)")
    sp.add_argument("--tensors", action="store_true",
                    help="per changed tensor (matched by name, also across renamed files): "
                    "dtype/shape changes, max absolute difference and relative L2 change "
                    "||b-a||/||a||, reading only the changed tensors")

    sp = add("tag", cmd_tag, "add tags to a version")
    sp.add_argument("model")
    sp.add_argument("version", help=VERSION_FORMS)
    sp.add_argument("tags", nargs="+")
    sp.set_defaults(remove=False)

    sp = add("untag", cmd_tag, "remove tags from a version")
    sp.add_argument("model")
    sp.add_argument("version", help=VERSION_FORMS)
    sp.add_argument("tags", nargs="+")
    sp.set_defaults(remove=True)

    sp = add("checkout", cmd_checkout, "write a version's files to a folder")
    sp.add_argument("model")
    sp.add_argument("version", nargs="?", default="@current",
                    help="default: @current; " + VERSION_FORMS)
    sp.add_argument("-o", "--output", required=True)
    sp.add_argument("--force", action="store_true",
                    help="replace files that already exist in the output folder (default: "
                    "refuse, exit 4, nothing written)")
    sp.add_argument(
        "--with-signature",
        nargs="?",
        const=True,
        metavar="KEYID",
        help="also write a stored signature as model.sig (the newest, or by this key id), "
        "which `model_signing verify key` checks",
    )

    sp = add("cat", cmd_cat, "stream one file of a version to stdout")
    sp.add_argument("model")
    sp.add_argument("version", help=VERSION_FORMS)
    sp.add_argument("path", nargs="?")

    sp = add("stats", cmd_stats, "logical vs stored bytes, dedup ratio")
    sp.add_argument("model", nargs="?")
    sp.add_argument("--exact", action="store_true",
                    help="read every manifest and list every object instead of the counters")
    sp.add_argument("--recount", action="store_true",
                    help="scan as --exact and save the count as the counters' new base (waits "
                         "for in-flight commits, holds new ones off while it counts)")

    add("models", cmd_models, "list models")

