"""The casstore command line: parse -> library -> render. All output lives in this package.

``main`` runs one command and turns every error into one line on stderr and an exit code from
:data:`EXIT_CODES`; the command groups live in one module each and add their parsers here.
A command imports only its own group (:data:`COMMANDS` maps each command to it), and each group
imports its library modules inside the handlers, so ``casstore refs`` never loads GC, signing,
torch or the demo; ``--help`` and unknown commands build the whole parser.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from casstore import errors
from casstore.cli._common import (
    EXIT_NOTIFY_FAILED,
    EXIT_VIOLATION,
    AddCommand,
    Parser,
    common_options,
)
from casstore.cli._render import emit_json

EXIT_INTERNAL = 70
EXIT_CODES: list[tuple[type[BaseException], int]] = [
    (errors.InvalidInputError, 2),
    (errors.NotFoundError, 3),
    (errors.AlreadyExistsError, 4),
    (errors.ConflictError, 4),
    (errors.CorruptObjectError, 5),
    (errors.StoreFormatError, 6),
    (errors.UnsupportedError, 6),
    (errors.BackendError, 7),
    (OSError, 7),
    (errors.CasstoreError, 1),
]
"""The exit code of each error class; the first class that matches wins."""

EXIT_TABLE = [
    (0, "success"),
    (
        1,
        "failed: a ref move refused (e.g. an unsigned version) or reverted, verify found "
        "problems, other errors",
    ),
    (2, "invalid input or usage"),
    (3, "not found: model, version, ref, file or object"),
    (4, "already exists, or a concurrent writer won the race"),
    (5, "corrupt object: stored bytes do not match their digest"),
    (6, "unsupported: unknown store format or a guarantee the backend cannot give"),
    (7, "storage backend or I/O error"),
    (EXIT_VIOLATION, "check: the regression policy is violated; watch --once: it acted on one"),
    (EXIT_NOTIFY_FAILED, "the ref moved, but a notify hook failed (warning on stderr)"),
    (EXIT_INTERNAL, "internal error (a bug: rerun with CASSTORE_DEBUG=1 for the traceback)"),
    (130, "interrupted"),
]
"""Every exit code of ``casstore``, as ``casstore --help`` and the README list them."""

GROUPS = ("versions", "refs", "signing", "maint", "remote", "serve", "tune", "demo")
"""The command-group modules under ``casstore.cli``, in the order ``--help`` lists them."""

COMMANDS: dict[str, str] = {
    **dict.fromkeys(("init", "commit", "log", "show", "query", "diff", "tag", "untag",
                     "checkout", "cat", "stats", "models"), "versions"),
    **dict.fromkeys(("refs", "reflog", "promote", "rollback", "advance", "abort", "resolve",
                     "check"), "refs"),
    **dict.fromkeys(("sign", "verify-signature", "trust"), "signing"),
    **dict.fromkeys(("gc", "rm", "policy", "verify", "repair"), "maint"),
    **dict.fromkeys(("push", "pull", "replicate"), "remote"),
    **dict.fromkeys(("status", "watch"), "serve"),
    "tune": "tune",
    "demo": "demo",
}
"""Which group module defines each command (a test checks it against the groups' parsers):
a command builds only its group's parser and imports only that group."""


_BULK = frozenset({"commit", "checkout", "push", "pull", "replicate", "verify", "repair", "gc",
                   "demo", "tune"})
"""Commands that stream chunk data through thread pools: their process shares one malloc
arena among threads, with fixed thresholds, and asks numpy's BLAS for no threads of its own
(:mod:`casstore.cli._malloc`)."""


def _group(name: str) -> ModuleType:
    return importlib.import_module(f"casstore.cli.{name}")


def build_parser(groups: Sequence[str] = GROUPS) -> argparse.ArgumentParser:
    """The command line: every group in ``groups`` (default: all) adds its commands through
    ``add``."""
    common = common_options()
    p = Parser(
        prog="casstore",
        parents=[common],
        description="Content-addressed, deduplicated model versions.",
        epilog="exit codes:\n" + "\n".join(f"  {c:<4} {text}" for c, text in EXIT_TABLE),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action=_VersionAction, nargs=0,
                   help="show program's version number and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: object, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, parents=[common], help=help, description=help)
        sp.set_defaults(func=fn)
        return sp

    adder: AddCommand = add  # type: ignore[assignment]
    for name in groups:
        _group(name).add_parser(adder)
    return p


@functools.cache
def _parser(group: str | None = None) -> argparse.ArgumentParser:
    """The parser of one group's commands, or of all (``None``), built once per process
    (building it costs more than most commands)."""
    return build_parser(GROUPS if group is None else (group,))


def _command_group(argv: Sequence[str]) -> str | None:
    """The group of the command ``argv`` names, when it names a known one after nothing but
    the common options; else ``None`` (``--help``, ``--version``, a typo: the whole parser
    answers, with the whole list of commands)."""
    it = iter(argv)
    for a in it:
        if a in ("--store", "--json") or a.startswith("--store="):
            if a == "--store":
                next(it, None)
            continue
        return None if a.startswith("-") else COMMANDS.get(a)
    return None


class _VersionAction(argparse.Action):
    """``--version``: reads the installed version only when asked (importlib.metadata costs
    more than a light command)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        parser._print_message(f"casstore {_version()}\n", sys.stdout)
        parser.exit()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("casstore")
    except PackageNotFoundError:  # running from a source tree that was never installed
        from casstore import __version__

        return __version__


def exit_code(e: BaseException) -> int:
    """The exit code for an error ``main`` caught."""
    for cls, code in EXIT_CODES:
        if isinstance(e, cls):
            return code
    return EXIT_INTERNAL


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code. Never lets a traceback reach the user
    (set ``CASSTORE_DEBUG=1`` to see it for an internal error)."""
    args: argparse.Namespace | None = None
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        if any("\x00" in a for a in argv):  # never from a shell; possible in-process
            raise errors.InvalidInputError("an argument contains a NUL byte")
        args = _parser(_command_group(argv)).parse_args(argv)
        if not hasattr(args, "json"):
            args.json = False
        if args.command in _BULK:
            from casstore.cli._malloc import one_blas_thread, one_malloc_arena

            one_malloc_arena()
            one_blas_thread()
        return int(args.func(args) or 0)
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
    except KeyboardInterrupt:
        print("casstore: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except (errors.CasstoreError, OSError) as e:
        print(f"casstore: error: {_one_line(e)}", file=sys.stderr)
        return _json_error(e, exit_code(e), args, argv)
    except Exception as e:
        if os.environ.get("CASSTORE_DEBUG") == "1":
            import traceback

            traceback.print_exc()
        print(
            f"casstore: internal error: {type(e).__name__}: {_one_line(e)} "
            "(a bug; rerun with CASSTORE_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return _json_error(e, EXIT_INTERNAL, args, argv)


def _json_error(
    e: BaseException, code: int, args: argparse.Namespace | None, argv: Sequence[str] | None
) -> int:
    """With ``--json`` an error is also one JSON document on stdout:
    ``{"error": {"type", "message", "exit_code"}}``."""
    wanted = getattr(args, "json", False) if args is not None else "--json" in (argv or ())
    if wanted:
        emit_json(error_doc(e, code))
    return code


def error_doc(e: BaseException, code: int) -> dict[str, dict[str, object]]:
    """The one JSON shape of an error (``type`` is the casstore exception class name)."""
    return {"error": {"type": type(e).__name__, "message": _one_line(e), "exit_code": code}}


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
