"""Frozen, validated records: the base of every stored or user-written document's model.

Refs, reflog entries, manifests, the store config and the policies are :class:`Record`\\ s:
frozen msgspec structs that refuse unknown keys. msgspec validates a document's types and
constraints as it converts it (``Record.parse``) and runs each record's ``__post_init__``
checks, on construction and on conversion alike; it imports in a few milliseconds, where
pydantic's import and first validator build cost ~100 ms of every command (measured by
``python -m benchmarks.latency``), more than a light command's whole budget.

Construction from trusted code (``Target(version=..., manifest=...)``) runs the
``__post_init__`` checks but converts no types; anything that comes from a user or a store goes
through :meth:`Record.parse`, which converts (a JSON list to a tuple, an ISO string to a
datetime, an int to a float) and refuses what does not fit with :class:`ValidationError`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar

import msgspec
from msgspec import Meta, ValidationError, field

from casstore.errors import InvalidInputError

__all__ = ["Meta", "Record", "ValidationError", "field", "to_builtins"]

R = TypeVar("R", bound="Record")


class Record(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A frozen record; unknown keys are an error. Subclasses declare ``kw_only=True`` (msgspec
    does not inherit it), so fields are given by keyword and stay in declaration order."""

    @classmethod
    def parse(cls: type[R], data: object) -> R:
        """Convert decoded JSON/msgpack (or a mapping from a user) into this record, checking
        every type, constraint and ``__post_init__`` rule; raises :class:`ValidationError`."""
        return msgspec.convert(data, cls, dec_hook=_dec_hook)

    def replace(self: R, **changes: Any) -> R:
        """A copy with some fields changed (no type conversion; ``__post_init__`` runs)."""
        return msgspec.structs.replace(self, **changes)

    def to_builtins(self) -> dict[str, Any]:
        """JSON-ready fields in declaration order (datetimes as RFC 3339 text)."""
        return msgspec.to_builtins(self, enc_hook=_enc_hook)

    @classmethod
    def from_input(cls: type[R], data: object, what: str) -> R:
        """:meth:`parse` for values a caller gave: InvalidInputError naming ``what``."""
        try:
            return cls.parse(data)
        except ValidationError as e:
            raise InvalidInputError(f"invalid {what}: {e}") from None

    def checked(self: R, what: str) -> R:
        """This record as a reader will see it: converted back from its JSON form with every
        type, constraint and ``__post_init__`` rule checked, else :class:`InvalidInputError`
        naming ``what``. Writers call it on records built from a caller's values, so nothing
        they store is unreadable (``reason=123`` would otherwise be written, then refused)."""
        return self.from_input(self.to_builtins(), what)

    def to_python(self) -> dict[str, Any]:
        """Fields in declaration order with bytes and datetimes kept as Python objects (what
        the msgpack encoders write)."""
        return msgspec.to_builtins(self, builtin_types=(bytes, dt.datetime), enc_hook=_enc_hook)


class Extensible:
    """A record that keeps keys it does not know (``TrainingData``): subclasses name their
    known fields and how to check them; ``parse`` and the encoders go through these hooks."""

    __slots__ = ()

    @classmethod
    def from_mapping(cls, data: object) -> Extensible:  # pragma: no cover - overridden
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - overridden
        raise NotImplementedError


def _dec_hook(typ: type, obj: object) -> object:
    if isinstance(typ, type) and issubclass(typ, Extensible):
        return obj if isinstance(obj, typ) else typ.from_mapping(obj)
    raise NotImplementedError(f"cannot convert to {typ!r}")


def _enc_hook(obj: object) -> object:
    if isinstance(obj, Extensible):
        return obj.to_dict()
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


def to_builtins(obj: object) -> Any:
    """JSON-ready form of records nested in plain containers."""
    return msgspec.to_builtins(obj, enc_hook=_enc_hook)
