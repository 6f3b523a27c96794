"""Which chunk of the parent version a new chunk may be stored as a delta against.

A chunk qualifies when it lies inside a tensor payload and the parent version holds a tensor
with the same name, dtype and shape (preferring the same file path) whose chunk at the same
offset inside the payload has the same size. The new delta's chain is that chunk followed by
the chunk's own chain; when the chain would grow past the policy's ``max_chain``, the chunk is
stored whole instead (a keyframe), so reading any chunk needs at most ``max_chain`` bases.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass

from casstore.chunking.base import TensorInfo
from casstore.chunking.encodings import Policy
from casstore.digest import Digest
from casstore.repo.manifest import Manifest
from casstore.store.base import ObjectStore

Chain = tuple[Digest, ...]


@dataclass(frozen=True)
class _ParentTensor:
    path: str
    offset: int
    chunks: dict[int, tuple[Digest, int]]  # chunk start offset in its file -> (digest, size)


class DeltaIndex:
    """The parent version's tensors and delta chains, for a writer choosing delta bases."""

    def __init__(self, parent: Manifest, policy: Policy) -> None:
        self.max_chain = policy.max_chain
        self.chains: dict[Digest, Chain] = parent.delta_chains()
        self._tensors: dict[tuple[str, str, tuple[int, ...]], list[_ParentTensor]] = {}
        for f in parent.files:
            starts = {off: (d, n) for d, off, n in f.chunk_offsets() if bytes(d) not in f.inline}
            for t in f.tensors:
                key = (t.name, t.dtype, tuple(t.shape))
                self._tensors.setdefault(key, []).append(_ParentTensor(f.path, t.offset, starts))

    def chain_of(self, digest: Digest) -> Chain:
        """The chain of a parent chunk (``()`` if it is stored whole)."""
        return self.chains.get(digest, ())

    def base_for(self, path: str, tensor: TensorInfo, rel: int, size: int) -> Chain | None:
        """The chain a new chunk at ``rel`` bytes into ``tensor``'s payload would have as a
        delta, or None when the parent has no such chunk or the chain would be too long."""
        if self.max_chain <= 0:
            return None
        found = self._tensors.get((tensor.name, tensor.dtype, tuple(tensor.shape)))
        if not found:
            return None
        same = [p for p in found if p.path == path]
        for p in same or found:
            hit = p.chunks.get(p.offset + rel)
            if hit is not None and hit[1] == size:
                chain = (hit[0], *self.chain_of(hit[0]))
                return chain if len(chain) <= self.max_chain else None
        return None


def delta_index(store: ObjectStore, policy: Policy, parent: Manifest | None) -> DeltaIndex | None:
    """The delta bases a commit to ``store`` may use, or None where deltas do not pay.

    Computing a delta means reading the parent's chunk back (and its chain). On a local store
    that is a page-cache read. On a remote one (S3, GCS, Azure) it downloads about 0.8x of
    the bytes the delta then saves 0.05-0.35x of, one GET per chunk plus one per chain link,
    before the upload can start: more bytes moved and slower, so the default ``fast`` policy
    takes deltas only on local stores; ``max`` takes them everywhere (fewest stored bytes,
    whatever the transfer). A push of a local store sends its deltas as they are.
    """
    if parent is None or not policy.enabled or policy.max_chain <= 0:
        return None
    if not (store.capabilities.local or policy.remote_deltas):
        return None
    return DeltaIndex(parent, policy)


def chain_depths(chains: Mapping[Digest, Sequence[Digest]]) -> dict[Digest, int]:
    """How many bases each chunk named in ``chains`` needs (0: a keyframe)."""
    depth: dict[Digest, int] = {}
    for d, chain in chains.items():
        depth[d] = max(depth.get(d, 0), len(chain))
        for i, b in enumerate(chain):
            depth[b] = max(depth.get(b, 0), len(chain) - 1 - i)
    return depth


def depth_order(digests: Iterable[Digest], chains: Mapping[Digest, Sequence[Digest]]
                ) -> list[Digest]:
    """``digests`` with every delta after the bases it needs (keyframes first)."""
    depth = chain_depths(chains)
    return sorted(digests, key=lambda d: (depth.get(d, 0), d))


def delta_children(items: list[Digest], chains: Mapping[Digest, Sequence[Digest]]
                   ) -> dict[Digest, list[Digest]]:
    """Per chunk of ``items``, the deltas among ``items`` whose direct base it is."""
    sent = set(items)
    out: dict[Digest, list[Digest]] = {}
    for d in items:
        chain = chains.get(d)
        if chain and chain[0] in sent:
            out.setdefault(chain[0], []).append(d)
    return out


def delta_rounds(items: list[Digest], sizes: Mapping[Digest, int], limit: int,
                 children: Mapping[Digest, list[Digest]]) -> Iterator[list[Digest]]:
    """``items`` in batches of at most ``limit`` bytes: a batch of chunks whose base is not
    among ``items``, then batches of the deltas based on those, a level at a time, then the
    next batch. Each batch lands before the next, so a delta is written after its base, and
    the bases a batch of deltas needs were all checked one batch of bases ago: a pass that
    keeps a base until its deltas are checked holds at most a batch of bases.
    ``children``: :func:`delta_children` of ``items``. Chunks no base leads to (a chain
    that loops, in a damaged store) come last, so every item is yielded once."""
    based = {c for cs in children.values() for c in cs}
    left = dict.fromkeys(items)
    for batch in by_bytes([d for d in items if d not in based], sizes, limit):
        yield batch
        level = [c for d in batch for c in children.get(d, ())]
        for d in batch:
            left.pop(d, None)
        while level:
            level = [c for c in level if c in left]  # each once, whatever the chains say
            for c in level:
                left.pop(c, None)
            yield from by_bytes(level, sizes, limit)
            level = [c for d in level for c in children.get(d, ())]
    if left:
        yield from by_bytes(list(left), sizes, limit)


def by_bytes(items: list[Digest], sizes: Mapping[Digest, int], limit: int
             ) -> Iterator[list[Digest]]:
    """``items`` in order, in batches of at most ``limit`` bytes (a bigger item alone)."""
    batch: list[Digest] = []
    total = 0
    for d in items:
        if batch and total + sizes[d] > limit:
            yield batch
            batch, total = [], 0
        batch.append(d)
        total += sizes[d]
    if batch:
        yield batch


class KeptBases(dict[Digest, Sized]):
    """The checked chunks a pass in :func:`delta_rounds` order keeps for the deltas still to
    be checked (pass it as ``bases`` to ``ChunkReader.check``, which gives what to keep: a
    chunk's verified object as stored, or a delta's decoded bytes); a base goes once its last
    delta here is checked. ``children``: :func:`delta_children` of the pass's chunks."""

    def __init__(self, children: Mapping[Digest, list[Digest]],
                 chains: Mapping[Digest, Sequence[Digest]]) -> None:
        super().__init__()
        self._waiting = {d: len(c) for d, c in children.items()}
        self._chains = chains

    @property
    def nbytes(self) -> int:
        """Bytes the kept bases hold (as stored or decoded)."""
        return sum(len(b) for b in self.values())

    def needed(self, d: Digest) -> bool:
        """True while deltas here still need ``d`` decoded."""
        return bool(self._waiting.get(d))

    def checked(self, d: Digest, data: Sized | None) -> None:
        """``d`` was checked (``data`` what ``check`` kept of it, None if it failed)."""
        if data is not None and self.needed(d):
            self[d] = data
        chain = self._chains.get(d)
        if chain and chain[0] in self._waiting:
            self._waiting[chain[0]] -= 1
            if not self._waiting[chain[0]]:
                self.pop(chain[0], None)
