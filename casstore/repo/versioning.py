"""Version names and specs: semantic versions, bumps, and how users name a version.

:func:`parse_spec` is the one parser of what a user typed to name a version, used by the
Python API, the CLI, ``casstore://`` paths and ``casstore.torch``. Every form casstore prints
is accepted:

* the full name ``{model}_v1.2.0_20250918_143022`` (``name`` in JSON output),
* the version string ``v1.2.0_20250918_143022`` (``version`` in JSON output),
* the semantic version ``1.2.0`` or ``v1.2.0`` (``semver``),
* ``latest`` (the highest semantic version), ``@REF`` (what a ref points at),
* a bare ref name such as ``production``.

Precedence: ``@REF`` is always a ref; ``latest`` is the newest version; text that starts like
a version (a digit, ``v`` + digit, or ``MODEL_v…``) is a version and never falls back to a
ref, so a malformed one is refused; anything else is a ref name (``@@1.0.0``-style escapes are
not needed: write ``@1.0.0`` for a ref called ``1.0.0``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from casstore.errors import InvalidInputError
from casstore.repo.keys import check_name, check_semver

Bump = Literal["major", "minor", "patch"]
FIRST_VERSION = "1.0.0"

_FULL = re.compile(r"(?P<model>.+)_v(?P<semver>\d+\.\d+\.\d+)_(?P<ts>\d{8}_\d{6})")
_STAMPED = re.compile(r"[vV](?P<semver>\d+\.\d+\.\d+)_(?P<ts>\d{8}_\d{6})")
_LOOKS_LIKE_VERSION = re.compile(r"[vV]?\d|.+_v\d+\.\d+\.\d+_\d{8}_\d{6}$")
FORMS = "1.2.0, v1.2.0, v1.2.0_YYYYMMDD_HHMMSS, MODEL_v1.2.0_YYYYMMDD_HHMMSS, latest, @REF or REF"
"""Every way to name a version, for error messages and ``--help``."""


def semver_key(semver: str) -> tuple[int, int, int]:
    a, b, c = check_semver(semver).split(".")
    return int(a), int(b), int(c)


def bump(semver: str | None, part: Bump = "patch") -> str:
    """The next version after ``semver`` (the first version if None)."""
    if semver is None:
        return FIRST_VERSION
    major, minor, patch = semver_key(semver)
    if part == "major":
        return f"{major + 1}.0.0"
    if part == "minor":
        return f"{major}.{minor + 1}.0"
    if part == "patch":
        return f"{major}.{minor}.{patch + 1}"
    raise InvalidInputError(f"bump must be major, minor or patch, not {part!r}")


@dataclass(frozen=True)
class VersionSpec:
    """A parsed way of naming a version: exactly one of semver, ref or latest."""

    semver: str | None = None
    ref: str | None = None
    latest: bool = False
    full_name: str | None = None  # when the timestamp was given, it must match the manifest
    bare_ref: bool = False  # the ref was named without '@' (error messages say so)


def parse_spec(model: str, text: str) -> VersionSpec:
    """Parse what a user typed to name a version of ``model`` (see the module docstring)."""
    if not isinstance(text, str) or not text:
        raise InvalidInputError("empty version")
    if text.startswith("@"):
        return VersionSpec(ref=check_name("ref", text[1:]))
    if text == "latest":
        return VersionSpec(latest=True)
    m = _STAMPED.fullmatch(text)
    if m:
        semver = check_semver(m["semver"])
        return VersionSpec(semver=semver, full_name=f"{model}_v{semver}_{m['ts']}")
    m = _FULL.fullmatch(text)
    if m:
        if m["model"] != model:
            raise InvalidInputError(
                f"version {text!r} belongs to model {m['model']!r}, not {model!r}"
            )
        return VersionSpec(semver=check_semver(m["semver"]), full_name=text)
    if not _LOOKS_LIKE_VERSION.match(text):
        try:
            return VersionSpec(ref=check_name("ref", text), bare_ref=True)
        except InvalidInputError as e:
            raise InvalidInputError(f"{e} (a version is named {FORMS})") from None
    core = text[1:] if text[:1] in ("v", "V") else text
    try:
        return VersionSpec(semver=check_semver(core))
    except InvalidInputError:
        raise InvalidInputError(f"malformed version {text!r}: use {FORMS}") from None
