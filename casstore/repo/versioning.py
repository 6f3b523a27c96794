"""Version names and specs: semantic versions, bumps, and how users name a version.

A version can be named by its full name ``{model}_v1.2.0_20250918_143022``, by its semantic
version (``v1.2.0`` or ``1.2.0``), by ``@ref`` (what a ref points at) or by ``latest``.
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
    full_name: str | None = None  # when given by full name, it must match the manifest


def parse_spec(model: str, text: str) -> VersionSpec:
    """Parse what a user typed to name a version of ``model``."""
    if not isinstance(text, str) or not text:
        raise InvalidInputError("empty version")
    if text.startswith("@"):
        return VersionSpec(ref=check_name("ref", text[1:]))
    if text == "latest":
        return VersionSpec(latest=True)
    m = _FULL.fullmatch(text)
    if m:
        if m["model"] != model:
            raise InvalidInputError(
                f"version {text!r} belongs to model {m['model']!r}, not {model!r}"
            )
        return VersionSpec(semver=check_semver(m["semver"]), full_name=text)
    core = text[1:] if text[:1] in ("v", "V") else text
    try:
        return VersionSpec(semver=check_semver(core))
    except InvalidInputError:
        raise InvalidInputError(
            f"malformed version {text!r}: use 1.2.0, v1.2.0, {model}_v1.2.0_YYYYMMDD_HHMMSS, "
            "@ref or latest"
        ) from None
