"""Version summaries: what listings need of a manifest, small enough to keep thousands together.

A :class:`Summary` holds every field of a manifest except its files and extra metadata
(name, semver, created, type, metrics, params, lineage, training data, change log,
dependencies, parent, size, file count) plus the manifest digest. It is derived from the
manifest (the source of truth) by :func:`summarize`, so a catalog of summaries can always be
rebuilt. Wire form: a msgpack map with fixed keys,
checked field by field when decoded (a damaged catalog is detected, never trusted).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from casstore.digest import Digest
from casstore.errors import CorruptObjectError, InvalidInputError
from casstore.records import to_builtins
from casstore.repo.keys import check_name, check_semver
from casstore.repo.manifest import VERSION_TYPES, Manifest
from casstore.repo.versioning import semver_key

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_US = dt.timedelta(microseconds=1)


@dataclass(frozen=True)
class Summary:
    """One version, as listings show it (immutable facts only; live tags live elsewhere)."""

    model: str
    version: str
    name: str
    manifest: str  # hex digest
    created_at: dt.datetime
    created_by: str
    version_type: str
    metrics: dict[str, float]
    training_data: dict[str, Any]
    change_log: str
    dependencies: tuple[str, ...]
    parent: str | None
    size_bytes: int
    file_count: int
    params: dict[str, str]
    lineage: dict[str, Any]

    @property
    def id(self) -> Digest:
        return Digest.parse(self.manifest)

    @property
    def key(self) -> tuple[int, int, int]:
        return semver_key(self.version)

    def to_wire(self) -> dict[str, Any]:
        return {
            "m": self.model, "v": self.version, "n": self.name, "d": self.manifest,
            "t": (self.created_at - _EPOCH) // _US, "by": self.created_by, "ty": self.version_type,
            "mx": self.metrics, "td": self.training_data, "cl": self.change_log,
            "dep": list(self.dependencies), "p": self.parent, "s": self.size_bytes,
            "f": self.file_count, "pa": self.params, "li": self.lineage,
        }

    @classmethod
    def from_wire(cls, w: object) -> Summary:
        """Decode and check one summary; CorruptObjectError if anything is off."""
        try:
            if not isinstance(w, dict):
                raise TypeError("not a map")
            metrics = w["mx"]
            if not isinstance(metrics, dict) or not all(
                isinstance(k, str) and isinstance(x, float) for k, x in metrics.items()
            ):
                raise TypeError("metrics")
            deps = w["dep"]
            if not isinstance(deps, list) or not all(isinstance(x, str) for x in deps):
                raise TypeError("dependencies")
            parent = w["p"]
            s = cls(
                model=check_name("model", w["m"]),
                version=check_semver(w["v"]),
                name=_str(w["n"]),
                manifest=Digest.parse(w["d"]).hex(),
                created_at=_time(w["t"]),
                created_by=_str(w["by"]),
                version_type=_str(w["ty"]),
                metrics=metrics,
                training_data=_map(w["td"]),
                change_log=_str(w["cl"]),
                dependencies=tuple(deps),
                parent=None if parent is None else check_semver(parent),
                size_bytes=_int(w["s"]),
                file_count=_int(w["f"]),
                params=_strings(w["pa"]),
                lineage=_map(w["li"]),
            )
            if s.version_type not in VERSION_TYPES:
                raise ValueError("version type")
            return s
        except (KeyError, TypeError, ValueError, OverflowError, InvalidInputError) as e:
            raise CorruptObjectError(f"catalog entry is unreadable: {e}") from None


def summarize(manifest: Manifest, digest: Digest) -> Summary:
    """The summary of a manifest (its digest given, as it names the manifest)."""
    m = manifest
    return Summary(
        model=m.model,
        version=m.version,
        name=m.name,
        manifest=digest.hex(),
        created_at=m.created_at,
        created_by=m.created_by,
        version_type=m.version_type,
        metrics={k: float(v) for k, v in m.performance_metrics.items()},
        training_data=to_builtins(m.training_data),
        change_log=m.change_log,
        dependencies=tuple(m.dependencies),
        parent=m.parent,
        size_bytes=m.size_bytes,
        file_count=len(m.files),
        params=dict(m.params),
        lineage=m.lineage.to_builtins(),
    )


def _str(x: object) -> str:
    if not isinstance(x, str):
        raise TypeError("expected text")
    return x


def _int(x: object) -> int:
    if not isinstance(x, int) or isinstance(x, bool) or x < 0:
        raise TypeError("expected a count")
    return x


def _map(x: object) -> dict[str, Any]:
    if not isinstance(x, dict) or not all(isinstance(k, str) for k in x):
        raise TypeError("expected a map")
    return x


def _strings(x: object) -> dict[str, str]:
    if not isinstance(x, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                          for k, v in x.items()):
        raise TypeError("expected a map of text")
    return x


def _time(x: object) -> dt.datetime:
    if not isinstance(x, int) or isinstance(x, bool):
        raise TypeError("expected a timestamp")
    return _EPOCH + dt.timedelta(microseconds=x)
