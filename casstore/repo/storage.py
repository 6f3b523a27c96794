"""How versions are stored: encodings, deltas and the bytes saved by dedup and by encoding.

``describe_version`` reads the header of each of a version's chunk objects (one small ranged
read each, in parallel) and tells how the version is stored. ``savings`` splits what a set of
versions saves into dedup (logical bytes vs distinct chunk bytes) and encoding (distinct chunk
bytes vs the chunk objects' stored bytes), from the manifests and one listing of the chunks.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from casstore.digest import Digest
from casstore.repo.chunks import ENCODINGS, HEAD_READ, parse_header
from casstore.repo.keys import CHUNKS, chunk_key, digest_from_chunk_key
from casstore.repo.manifest import Manifest
from casstore.store.base import ObjectStore


@dataclass
class VersionStorage:
    """What one version's chunk objects look like in the store."""

    logical_bytes: int = 0  # the version's file bytes
    chunk_bytes: int = 0  # decoded bytes of its distinct chunk objects (inline ones excluded)
    stored_bytes: int = 0  # bytes of those objects as stored
    objects: int = 0
    inline_chunks: int = 0
    encodings: dict[str, int] = field(default_factory=dict)  # objects per encoding
    delta_objects: int = 0
    delta_bases: int = 0  # objects of other versions its deltas need
    longest_chain: int = 0

    def to_dict(self) -> dict[str, Any]:
        ratio = self.stored_bytes / self.chunk_bytes if self.chunk_bytes else 1.0
        return {**asdict(self), "stored_vs_chunk_bytes": round(ratio, 4)}


def describe_version(store: ObjectStore, manifest: Manifest, *, workers: int = 8
                     ) -> VersionStorage:
    """Read every chunk object's header (O(chunks) small ranged reads, in parallel)."""
    out = VersionStorage(logical_bytes=manifest.size_bytes)
    sizes: dict[Digest, int] = {}
    for f in manifest.files:
        out.inline_chunks += len(f.inline)
        for d, n in f.chunks:
            if d not in f.inline:
                sizes[Digest(d)] = n
    bases = {Digest(b) for f in manifest.files for c in f.deltas.values() for b in c} - set(sizes)

    def head(d: Digest) -> tuple[int, int, int]:
        info = store.stat(chunk_key(d))
        h = parse_header(store.get(chunk_key(d), 0, min(info.size, HEAD_READ)), d)
        return h.encoding, len(h.chain), info.size

    counts: Counter[str] = Counter()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max(1, workers)) as pool:
        for d, (enc, chain, stored) in zip(sizes, pool.map(head, sizes)):
            counts[ENCODINGS[enc]] += 1
            out.stored_bytes += stored
            out.chunk_bytes += sizes[d]
            out.delta_objects += enc == 3
            out.longest_chain = max(out.longest_chain, chain)
    out.objects = len(sizes)
    out.delta_bases = len(bases)
    out.encodings = dict(sorted(counts.items()))
    return out


@dataclass
class Savings:
    """Bytes saved by dedup and by encoding, separately."""

    logical_bytes: int = 0  # every version's files
    unique_bytes: int = 0  # distinct chunks, decoded (what a store without encodings holds)
    stored_bytes: int = 0  # those chunks as stored (+ inline chunks, kept in manifests)

    @property
    def saved_by_dedup(self) -> int:
        return max(0, self.logical_bytes - self.unique_bytes)

    @property
    def saved_by_encoding(self) -> int:
        return self.unique_bytes - self.stored_bytes

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "saved_by_dedup": self.saved_by_dedup,
                "saved_by_encoding": self.saved_by_encoding}


def chunk_objects(store: ObjectStore) -> dict[Digest, int]:
    """Every chunk object in the store and its stored size (one listing)."""
    return {d: i.size for i in store.list(CHUNKS) if (d := digest_from_chunk_key(i.key))}


def savings(store: ObjectStore, manifests: list[Manifest],
            listed: dict[Digest, int] | None = None) -> Savings:
    """Dedup and encoding savings of ``manifests``: their chunk sizes and one chunk listing
    (``listed``, from :func:`chunk_objects`, when the caller has it already)."""
    out = Savings()
    objects: dict[Digest, int] = {}
    inline: dict[bytes, int] = {}
    for m in manifests:
        out.logical_bytes += m.size_bytes
        for f in m.files:
            for d, n in f.chunks:
                if d in f.inline:
                    inline[d] = n
                else:
                    objects[Digest(d)] = n
    if listed is None:
        listed = chunk_objects(store)
    for d, n in objects.items():
        out.unique_bytes += n
        out.stored_bytes += listed.get(d, 0)
    bases = {Digest(b) for m in manifests for f in m.files for c in f.deltas.values() for b in c}
    out.stored_bytes += sum(listed.get(d, 0) for d in bases - set(objects))
    out.unique_bytes += sum(inline.values())
    out.stored_bytes += sum(inline.values())
    return out
