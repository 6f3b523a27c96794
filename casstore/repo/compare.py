"""Comparing two versions: metadata and metric deltas, and a content diff per file and tensor."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from casstore.repo.manifest import FileEntry, Manifest


@dataclass
class TensorDiff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0


@dataclass
class FileDiff:
    path: str
    status: str  # added | removed | changed | unchanged
    size_a: int | None
    size_b: int | None
    tensors: TensorDiff | None = None


@dataclass
class Comparison:
    a: str
    b: str
    metadata: dict[str, tuple[Any, Any]]
    metrics: dict[str, dict[str, float | None]]
    files: list[FileDiff]
    bytes_shared: int  # bytes of b whose chunks a also has
    bytes_new: int  # bytes of b in chunks a does not have

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "metadata": {k: {"a": x, "b": y} for k, (x, y) in self.metadata.items()},
            "metrics": self.metrics,
            "files": [
                {
                    "path": f.path,
                    "status": f.status,
                    "size_a": f.size_a,
                    "size_b": f.size_b,
                    **(
                        {
                            "tensors": {
                                "added": f.tensors.added,
                                "removed": f.tensors.removed,
                                "changed": f.tensors.changed,
                                "unchanged": f.tensors.unchanged,
                            }
                        }
                        if f.tensors
                        else {}
                    ),
                }
                for f in self.files
            ],
            "bytes_shared": self.bytes_shared,
            "bytes_new": self.bytes_new,
        }


_META = ("version_type", "change_log", "parent", "dependencies", "created_by", "created_at")


def _tensor_chunks(f: FileEntry) -> dict[str, tuple[bytes, ...]]:
    """For each tensor, the digests of the chunks covering its payload."""
    spans = f.chunk_offsets()
    out = {}
    for t in f.tensors:
        lo, hi = t.offset, t.offset + t.length
        out[t.name] = tuple(bytes(d) for d, off, n in spans if off < hi and off + n > lo) + (
            t.dtype.encode(),
            repr(t.shape).encode(),
        )
    return out


def _diff_tensors(fa: FileEntry, fb: FileEntry) -> TensorDiff:
    ta, tb = _tensor_chunks(fa), _tensor_chunks(fb)
    d = TensorDiff(added=sorted(set(tb) - set(ta)), removed=sorted(set(ta) - set(tb)))
    for name in sorted(set(ta) & set(tb)):
        if ta[name] == tb[name]:
            d.unchanged += 1
        else:
            d.changed.append(name)
    return d


def compare(a: Manifest, b: Manifest) -> Comparison:
    meta = {}
    for k in _META:
        x, y = getattr(a, k), getattr(b, k)
        if x != y:
            meta[k] = (str(x) if k == "created_at" else x, str(y) if k == "created_at" else y)
    metrics = {}
    for k in sorted(set(a.performance_metrics) | set(b.performance_metrics)):
        x, y = a.performance_metrics.get(k), b.performance_metrics.get(k)
        metrics[k] = {"a": x, "b": y, "delta": None if x is None or y is None else y - x}
    fa = {f.path: f for f in a.files}
    fb = {f.path: f for f in b.files}
    files = []
    for path in sorted(set(fa) | set(fb)):
        x, y = fa.get(path), fb.get(path)
        if x is None or y is None:
            files.append(
                FileDiff(
                    path,
                    "added" if x is None else "removed",
                    x.size if x else None,
                    y.size if y else None,
                )
            )
            continue
        status = "unchanged" if x.chunks == y.chunks else "changed"
        tensors = _diff_tensors(x, y) if (x.tensors or y.tensors) else None
        files.append(FileDiff(path, status, x.size, y.size, tensors))
    have = a.all_chunks()
    shared = new = 0
    seen: set[bytes] = set()
    for f in b.files:
        for d, n in f.chunks:
            if d in have:
                shared += n
            elif d not in seen:
                new += n
            else:
                shared += n
            seen.add(d)
    return Comparison(a.name, b.name, meta, metrics, files, shared, new)
