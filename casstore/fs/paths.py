"""The ``casstore://`` path grammar: parse a path into model, version spec and file path.

Paths (the part after ``casstore://``, as fsspec hands it to the filesystem)::

    ""                          the root: one directory per model
    MODEL                       one directory per version, named MODEL@SEMVER
    MODEL@VERSION               the root of one version
    MODEL@VERSION/dir/file      a file (or an implied directory) inside that version

VERSION is anything ``Repository.get_version`` takes, parsed by
:func:`casstore.repo.versioning.parse_spec` (``1.2.0``, ``v1.2.0``, ``v1.2.0_YYYYMMDD_HHMMSS``,
the full name, ``latest``, ``@REF``, or a bare ref name). Precedence: ``@REF`` is always a ref;
``latest`` is the newest version; a spec that starts like a version (a digit, ``v`` + digit,
or a full name) is a version and never falls back to a ref; anything else is a ref. So
``bert@production`` is the ref ``production`` and ``bert@@1.0.0`` names a ref called ``1.0.0``.
Model and ref names cannot contain ``@`` or ``/``, so the first ``@`` of the first component
always ends the model name.
"""

from __future__ import annotations

from dataclasses import dataclass

from casstore.errors import InvalidInputError
from casstore.repo.keys import check_name
from casstore.repo.manifest import check_relpath
from casstore.repo.versioning import parse_spec

PROTOCOL = "casstore"


@dataclass(frozen=True)
class FsPath:
    """A parsed path: the root (no model), a model (no spec), or a place inside a version."""

    model: str | None = None
    spec: str | None = None  # as written in the path (kept in listed names)
    inner: str = ""  # a path inside the version, '' for its root

    @property
    def version_root(self) -> str:
        return f"{self.model}@{self.spec}"

    def join(self, relpath: str) -> str:
        """The filesystem path of ``relpath`` inside this version."""
        return f"{self.version_root}/{relpath}" if relpath else self.version_root


def strip_protocol(path: str) -> str:
    """``casstore://a/b/`` -> ``a/b``. Chained URLs are split by fsspec before this."""
    for marker in (f"{PROTOCOL}://", f"{PROTOCOL}::"):
        if path.startswith(marker):
            path = path[len(marker) :]
    return path.strip("/")


def parse_path(path: str) -> FsPath:
    """Split a stripped path; refuse what names no model, version or file clearly."""
    if not path:
        return FsPath()
    head, _, rest = path.partition("/")
    model, at, spec = head.partition("@")
    check_name("model", model)
    if not at:
        if rest:
            raise InvalidInputError(
                f"casstore://{path}: name a version before a file path, "
                f"e.g. casstore://{model}@latest/{rest} or casstore://{model}@production/{rest}"
            )
        return FsPath(model)
    if not spec:
        raise InvalidInputError(
            f"casstore://{path}: empty version after '@'; use MODEL@1.2.0, MODEL@latest, "
            "MODEL@REF or MODEL@@REF"
        )
    version_spec(model, spec)  # refuse a malformed version before any request
    if rest:
        check_relpath(rest)
    return FsPath(model, spec, rest)


def version_spec(model: str, spec: str) -> str:
    """The spec, checked before any request, with a bare ref name written as ``@REF``."""
    parsed = parse_spec(model, spec)  # raises InvalidInputError with the accepted forms
    return f"@{parsed.ref}" if parsed.bare_ref else spec
