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
    renamed_from: str | None = None  # the file of a whose tensors this one holds


@dataclass
class Comparison:
    a: str
    b: str
    metadata: dict[str, tuple[Any, Any]]
    metrics: dict[str, dict[str, float | None]]
    files: list[FileDiff]
    bytes_shared: int  # bytes of b whose chunks a also has
    bytes_new: int  # bytes of b in chunks a does not have
    tensor_changes: list[Any] | None = None  # TensorChange per changed tensor, when asked

    def pairs(self, a: Manifest, b: Manifest) -> list[tuple[FileEntry, FileEntry, list[str]]]:
        """(file of a, file of b, changed tensor names) for every file compared by tensor."""
        fa = {f.path: f for f in a.files}
        fb = {f.path: f for f in b.files}
        return [(fa[f.renamed_from or f.path], fb[f.path], f.tensors.changed)
                for f in self.files if f.tensors and f.status not in ("added", "removed")]

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
                    **({"renamed_from": f.renamed_from} if f.renamed_from else {}),
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
            **(
                {"tensor_changes": [c.to_dict() for c in self.tensor_changes]}
                if self.tensor_changes is not None
                else {}
            ),
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


def _layout(f: FileEntry, name: str) -> tuple[str, tuple[int, ...]]:
    t = next(t for t in f.tensors if t.name == name)
    return t.dtype, t.shape


def _renames(fa: dict[str, FileEntry], fb: dict[str, FileEntry]) -> dict[str, str]:
    """Files of b that hold the tensors of a file of a under another path (``epoch0`` ->
    ``epoch1``): path in b -> path in a, paired greedily by the most tensor names shared
    (at least half of the smaller file's)."""
    gone = {p: {t.name for t in f.tensors} for p, f in fa.items() if p not in fb and f.tensors}
    new = {p: {t.name for t in f.tensors} for p, f in fb.items() if p not in fa and f.tensors}
    scored = sorted(
        ((len(gone[x] & new[y]), x, y) for x in gone for y in new),
        key=lambda s: (-s[0], s[1], s[2]),
    )
    out: dict[str, str] = {}
    for shared, x, y in scored:
        if y in out or x in out.values():
            continue
        if shared and 2 * shared >= min(len(gone[x]), len(new[y])):
            out[y] = x
    return out


def _diff_tensors(fa: FileEntry, fb: FileEntry) -> TensorDiff:
    ta, tb = _tensor_chunks(fa), _tensor_chunks(fb)
    d = TensorDiff(added=sorted(set(tb) - set(ta)), removed=sorted(set(ta) - set(tb)))
    for name in sorted(set(ta) & set(tb)):
        if ta[name] == tb[name] and _layout(fa, name) == _layout(fb, name):
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
    renamed = _renames(fa, fb)
    files = []
    for path in sorted((set(fa) - set(renamed.values())) | set(fb)):
        x, y = fa.get(renamed.get(path, path)), fb.get(path)
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
        files.append(FileDiff(path, status, x.size, y.size, tensors, renamed.get(path)))
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
