"""What every command group shares: the store URL, opening the repository, the option parsers
for metrics, training data, traffic steps and durations, and the exit code of a violated policy.

Command groups import this module, never the ``casstore.cli`` package itself.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

from casstore import errors
from casstore.repo.versioning import FORMS

VERSION_FORMS = "any of " + FORMS
"""How a version may be named, for the help of every argument that takes one."""

DEFAULT_STORE = ".casstore"
EXIT_VIOLATION = 8
"""``casstore check`` found a regression-policy violation."""
EXIT_NOTIFY_FAILED = 9
"""The ref moved, but a notify hook failed (the move stands)."""

AddCommand = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]
"""``add(name, handler, help)`` -> the new subcommand's parser (what ``add_parser`` receives)."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and exit 2 through ``main``'s handler."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise errors.InvalidInputError(f"{message} (see '{self.prog} --help')")


def store_url(args: argparse.Namespace) -> str:
    """``--store``, else ``$CASSTORE_STORE``, else ``./.casstore``."""
    return getattr(args, "store", None) or os.environ.get("CASSTORE_STORE") or DEFAULT_STORE


def open_repo(args: argparse.Namespace, url: str | None = None, *, create: bool = False) -> Any:
    """The repository at ``url`` (default: the store the arguments name), configured from the
    environment: the actor (``$CASSTORE_ACTOR``), a notify command (``$CASSTORE_NOTIFY``), the
    health-check timeout (``$CASSTORE_HEALTH_TIMEOUT``), the lease timeouts
    (``$CASSTORE_SESSION_TIMEOUT``, ``$CASSTORE_LOCK_TIMEOUT``, ``$CASSTORE_LEASE_WAIT``) and
    the key ids that must have signed the first trust policy (``$CASSTORE_TRUST_ANCHORS``,
    comma-separated).

    A store that was never created (no config) is NotFoundError unless ``create``: only
    writing commands (init, commit, policy set, the destination of push/pull/replicate) make
    one, so a mistyped ``--store`` never looks like an empty, healthy store."""
    from casstore.ops.hooks import Hooks
    from casstore.repo.leases import LeaseSettings
    from casstore.repository import Repository

    env = os.environ
    hooks = Hooks(notify_commands=[env["CASSTORE_NOTIFY"]] if env.get("CASSTORE_NOTIFY") else [])
    if env.get("CASSTORE_HEALTH_TIMEOUT"):
        try:
            hooks.health_timeout = float(env["CASSTORE_HEALTH_TIMEOUT"])
        except ValueError:
            raise errors.InvalidInputError("$CASSTORE_HEALTH_TIMEOUT must be seconds") from None
    repo = Repository(
        url or store_url(args),
        actor=env.get("CASSTORE_ACTOR") or None,
        hooks=hooks,
        lease_settings=LeaseSettings.from_env(env),
        trust_anchors=[a.strip() for a in env.get("CASSTORE_TRUST_ANCHORS", "").split(",")
                       if a.strip()],
    )
    if not create and not repo.exists:
        where = url or store_url(args)
        raise errors.NotFoundError(
            f"no casstore store at {where}; run `casstore init` or check --store/CASSTORE_STORE"
        )
    return repo


def private_key(path: str | None) -> tuple[bytes, bytes | None]:
    """A signing key's PEM and password: ``--key FILE``, else ``$CASSTORE_SIGNING_KEY`` (the
    PEM text itself); the password, if any, from ``$CASSTORE_SIGNING_KEY_PASSWORD``."""
    env = os.environ
    password = env.get("CASSTORE_SIGNING_KEY_PASSWORD")
    pw = password.encode() if password else None
    if path:
        return read_file(path, "--key"), pw
    if env.get("CASSTORE_SIGNING_KEY"):
        return env["CASSTORE_SIGNING_KEY"].encode(), pw
    raise errors.InvalidInputError("no signing key: pass --key FILE or set $CASSTORE_SIGNING_KEY")


def read_file(path: str, option: str) -> bytes:
    """The bytes of a file named on the command line (InvalidInputError if unreadable)."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise errors.InvalidInputError(f"{option}: cannot read {path!r}: {e.strerror}") from e


def parse_metrics(items: Sequence[str]) -> dict[str, float]:
    """``["accuracy=0.9", ...]`` -> ``{"accuracy": 0.9}``; finite numbers only."""
    out = {}
    for item in items:
        k, sep, v = item.partition("=")
        try:
            if not sep or not k.strip():
                raise ValueError
            value = float(v)
            if not math.isfinite(value):
                raise ValueError
        except ValueError:
            raise errors.InvalidInputError(
                f"bad metric {item!r}: expected NAME=NUMBER"
            ) from None
        out[k] = value
    return out


def parse_params(items: Sequence[str]) -> dict[str, str]:
    """``["lr=3e-4", "optimizer=adamw"]`` -> ``{"lr": "3e-4", ...}`` (values kept as text)."""
    out = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise errors.InvalidInputError(f"bad param {item!r}: expected NAME=VALUE")
        if k.strip() in out:
            raise errors.InvalidInputError(f"param {k.strip()!r} given twice")
        out[k.strip()] = v
    return out


def parse_training_data(text: str | None) -> dict[str, Any] | None:
    """``--training-data``: a JSON object, or ``@file.json`` holding one."""
    if not text:
        return None
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise errors.InvalidInputError(f"cannot read {text[1:]!r}: {e.strerror}") from e
        except UnicodeDecodeError as e:
            raise errors.InvalidInputError(f"{text[1:]!r} is not UTF-8 text") from e
    try:
        data = json.loads(text)
    except ValueError as e:
        raise errors.InvalidInputError(f"--training-data is not JSON: {e}") from e
    if not isinstance(data, dict):
        raise errors.InvalidInputError("--training-data must be a JSON object")
    return data


STEPS_HELP = (
    "traffic steps, e.g. 10,50,100 or 1%%,25%%,100%% (percents) or 0.1,0.5,1 (fractions): "
    "values with %% or any value above 1 make the whole list percents"
)


def parse_steps(text: str, option: str = "--steps") -> tuple[float, ...]:
    """Traffic steps as fractions of 1.

    A value written with ``%`` is a percent, and so is every value once any of them exceeds 1
    (``10,50,100``); otherwise they are fractions (``0.1,0.5,1``). ``1%`` is a 1 % canary,
    ``1`` the whole traffic.
    """
    parts = [x.strip() for x in text.split(",") if x.strip()]
    try:
        vals = [float(x.removesuffix("%")) for x in parts]
    except ValueError:
        vals = []
    if not vals or not all(math.isfinite(v) for v in vals):
        raise errors.InvalidInputError(f"bad {option} {text!r}: e.g. 10,50,100 or 1%")
    percent = any(x.endswith("%") for x in parts) or any(v > 1 for v in vals)
    return tuple(v / 100 for v in vals) if percent else tuple(vals)


def parse_duration(text: str) -> float:
    """Seconds in ``0``, ``90s``, ``30m``, ``12h``, ``7d``, ``2w``."""
    from casstore.ops.retention import parse_duration as parse

    return parse(text)


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?", re.IGNORECASE)


def byte_size(text: str) -> int:
    """An argparse type: bytes as ``0``, ``512``, ``100MB``, ``1.5GiB`` (KB = 1000 bytes,
    KiB = 1024)."""
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"expected a size such as 0, 500MB or 2GiB, got {text!r}")
    unit = (m[2] or "").lower()
    base = 1024 if unit.endswith("i") else 1000
    return int(float(m[1]) * base ** ("kmgt".index(unit[0]) + 1 if unit else 0))


def count(text: str) -> int:
    """An argparse type: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def positive_count(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    value = count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def amount(text: str) -> float:
    """An argparse type: a finite number >= 0 (seconds, megabytes)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def positive_amount(text: str) -> float:
    """An argparse type: a finite number > 0."""
    value = amount(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def common_options() -> argparse.ArgumentParser:
    """``--store`` and ``--json``, accepted before or after the command name."""
    p = Parser(add_help=False)
    p.add_argument(
        "--store",
        default=argparse.SUPPRESS,
        help="store URL or folder (default: $CASSTORE_STORE, then ./.casstore)",
    )
    p.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON document"
    )
    return p
