"""CLI commands for signed versions: sign, verify-signature, trust (show / set)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from casstore import errors
from casstore.cli._common import AddCommand, open_repo, positive_count, private_key, read_file
from casstore.cli._render import SIGNATURE_HEADER, emit_json, signature_rows, table
from casstore.cli._shapes import version_ref


def cmd_sign(args: argparse.Namespace) -> int:
    pem, password = private_key(args.key)
    repo = open_repo(args)
    if args.output:  # checked before anything is stored
        where = Path(args.output)
        if where.is_dir() or not where.parent.is_dir():
            raise errors.InvalidInputError(f"--output: cannot write a file at {args.output!r}")
    info, bundle = repo.sign(args.model, args.version, pem, password=password)
    if args.output:
        Path(args.output).write_bytes(bundle)
    if args.json:
        v = repo.get_version(info.model, info.version)
        emit_json(_version_doc(repo, v) | {"signature": info.to_dict()})
    else:
        print(f"signed {info.model} {info.version} with key {info.keyid[:12]} ({info.signer})")
    return 0


def _version_doc(repo: Any, v: Any) -> dict[str, Any]:
    """The version shape of every --json document (see casstore.cli._shapes)."""
    return {"model_name": v.model, **version_ref(repo, v.model, v.version, v.id.hex())}


def cmd_verify_signature(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    keys = [read_file(p, "--trusted-key") for p in args.trusted_key] or None
    if keys is None and repo.trust_policy() is None:
        raise errors.InvalidInputError("no --trusted-key given and the store has no trust policy")
    v = repo.get_version(args.model, args.version)
    sigs = repo.signatures(args.model, v.version, keys, read_data=args.read_data)
    good = [s for s in sigs if s.ok]
    if args.json:
        emit_json(
            _version_doc(repo, v)
            | {"valid": bool(good), "signatures": [s.to_dict() for s in sigs]}
        )
    else:
        if sigs:
            table(signature_rows(sigs), SIGNATURE_HEADER)
        print(
            f"{v.name}: "
            + (
                f"{len(good)} valid signature(s) from trusted keys"
                if good
                else "no valid signature from a trusted key"
            )
        )
    return 0 if good else 1


def cmd_trust(args: argparse.Namespace) -> int:
    from casstore.ops.trust import make_rule

    repo = open_repo(args)
    if args.action == "set":
        keys = []
        for item in args.trusted_key:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise errors.InvalidInputError(f"bad --trusted-key {item!r}: expected NAME=PUB.pem")
            keys.append((name, read_file(path, "--trusted-key")))
        rules = [make_rule(r, args.signatures, args.signed_by) for r in args.require]
        pem, password = private_key(args.key)
        repo.set_trust_policy(keys, rules, pem, password=password, force_init=args.force_init)
    elif args.trusted_key or args.require or args.force_init or args.signed_by:
        raise errors.InvalidInputError("trust show takes no policy options (did you mean set?)")
    policy = repo.trust_policy()
    if args.json:
        emit_json({"policy": None if policy is None else policy.to_dict()})
        return 0
    if policy is None:
        print("no trust policy: refs move to any version")
        return 0
    when = f"{policy.created_at:%Y-%m-%d %H:%M:%S}"
    print(f"trust policy {policy.serial}, set by {policy.created_by} at {when} UTC")
    table([[k.name, k.public.keyid[:12]] for k in policy.keys], ["trusted key", "key id"])
    table(
        [[r.model, r.ref, r.signatures, ",".join(r.keys) or "any trusted"] for r in policy.rules],
        ["model", "ref", "signatures", "by"],
    )
    return 0


def add_parser(add: AddCommand) -> None:
    """Add the signing commands."""
    key_help = "private key PEM (default: $CASSTORE_SIGNING_KEY holds the PEM text)"
    sp = add("sign", cmd_sign, "sign a version (OpenSSF model-signing format) with a private key")
    sp.add_argument("model")
    sp.add_argument("version")
    sp.add_argument("--key", help=key_help)
    sp.add_argument("--output", "-o", help="also write the signature (model.sig) to this file")

    sp = add(
        "verify-signature",
        cmd_verify_signature,
        "check a version's signatures against trusted public keys (exit 1: none valid)",
    )
    sp.add_argument("model")
    sp.add_argument("version", nargs="?", default="@current")
    sp.add_argument(
        "--trusted-key",
        action="append",
        default=[],
        help="public key PEM (default: the keys of the store's trust policy)",
    )
    sp.add_argument(
        "--read-data",
        action="store_true",
        help="also re-hash every file and compare with the signed SHA-256s",
    )

    sp = add("trust", cmd_trust, "show or set the store's trust policy (signed refs)")
    sp.add_argument("action", choices=["show", "set"])
    sp.add_argument(
        "--trusted-key",
        action="append",
        default=[],
        metavar="NAME=PUB.pem",
        help="a trusted public key (set replaces the whole list)",
    )
    sp.add_argument(
        "--require",
        action="append",
        default=[],
        metavar="[MODEL:]REF",
        help="this ref (of every model, or of MODEL) needs signed versions",
    )
    sp.add_argument(
        "--signatures",
        type=positive_count,
        default=1,
        help="valid signatures by distinct trusted keys each --require needs",
    )
    sp.add_argument(
        "--signed-by",
        action="append",
        default=[],
        metavar="NAME",
        help="only these trusted keys count for --require",
    )
    sp.add_argument("--key", help="private key signing the change: " + key_help)
    sp.add_argument(
        "--force-init",
        action="store_true",
        help="create the first policy (refused once a policy exists)",
    )
