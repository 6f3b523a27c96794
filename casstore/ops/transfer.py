"""Moving versions between stores: push, pull, replicate, and rollback across buckets.

A transfer sends only the chunks the destination lacks. It learns what the destination has
from the destination's own manifests first (its newest versions, and the versions being sent
that are already there, answer for all their chunks without a request each), then checks the
rest in batches. Order is the same as a commit: chunks -> manifest -> version index -> tags ->
ref, so the destination's ref moves only after everything it points at is present.
Re-running an interrupted transfer sends only what is still missing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from casstore.digest import Digest
from casstore.errors import (
    AlreadyExistsError,
    CasstoreError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
)
from casstore.ops.hooks import Hooks
from casstore.ops.rollout import MoveResult, Rollout
from casstore.ops.signing import signatures_of
from casstore.repo.catalog import Version, parse_index_entry
from casstore.repo.chunks import ChunkReader
from casstore.repo.context import StoreContext
from casstore.repo.deltas import KeptBases, delta_children, delta_rounds, depth_order
from casstore.repo.keys import (
    chunk_key,
    expired_key,
    is_keyid,
    manifest_key,
    signature_key,
    tag_key,
    version_key,
)
from casstore.repo.model_catalog import Entry
from casstore.store.base import together


@dataclass
class TransferReport:
    versions: list[str] = field(default_factory=list)  # model@semver copied or present
    chunks_sent: int = 0
    bytes_sent: int = 0  # chunk object bytes written to the destination
    chunks_present: int = 0  # already at the destination
    manifests_sent: int = 0
    refs_moved: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "seconds": round(self.seconds, 4)}


def select_versions(
    repo: StoreContext, model: str | None, spec: str | None, all_versions: bool
) -> list[Version]:
    """What to transfer: one version (or ``@ref``), every version of a model, or everything."""
    if model is None:
        if spec is not None:
            raise InvalidInputError("a version needs a model")
        return [v for m in repo.catalog.models() for v in repo.versions(m)]
    if spec is not None:
        return [repo.get_version(model, spec)]
    if all_versions:
        return repo.versions(model)
    return [repo.get_version(model, "@current")]


def transfer(
    src: StoreContext,
    dst: StoreContext,
    versions: Sequence[Version],
    *,
    refs: Iterable[str] = (),
    progress: Callable[[int], None] | None = None,
    hooks: Hooks | None = None,
) -> TransferReport:
    """Copy ``versions`` (and then move ``refs`` of their models) from ``src`` to ``dst``;
    ``hooks`` are told about the destination's ref moves."""
    import time

    t0 = time.perf_counter()
    report = TransferReport()
    fresh = not dst.exists  # a store created here holds no chunks: nothing to ask about
    if fresh:
        dst.init(src.config.replace(created_at=None))
    mover = Rollout(dst, hooks)
    with dst.writing("transfer"):
        dst.catalog.ensure_catalogs()
        # what the destination's newest versions hold, and which of these it has indexed
        per_model, indexed = together(
            dst.store, lambda: _known_at_destination(dst, {v.model for v in versions}),
            lambda: set() if fresh else dst.store.exists_many(
                version_key(v.model, v.version) for v in versions))
        known = set().union(*per_model.values())
        reader = ChunkReader(src.store)
        src.catalog.load(versions)  # one batch, not a request per version as each is asked
        there = _already_there(src, dst, [v for v in versions if version_key(
            v.model, v.version) in indexed], known, report)
        todo = [v for v in versions if _label(v) not in there]
        written = _send_chunks(src, dst, todo, known, reader, report, progress, fresh=fresh)
        counters = _counters(todo, per_model, written)
        # chunks first, then the versions' manifests, index entries and tags: models in
        # parallel, one model's versions together (_publish_model)
        by_model: dict[str, list[Version]] = {}
        for v in todo:
            by_model.setdefault(v.model, []).append(v)

        # numbers the source ever used, expired ones too, stay unused at the destination:
        # raised by the compare-and-swap that finalizes a model's versions
        highs = {}
        for model in sorted({v.model for v in versions}):
            view = src.catalog.models_catalog.read(model)
            if view is not None and view.high is not None:
                highs[model] = view.high

        def publish(vs: list[Version]) -> list[tuple[str, int]]:
            return [done for i in range(0, len(vs), _PUBLISH_GROUP)
                    for done in _publish_model(src, dst, vs[i : i + _PUBLISH_GROUP], counters,
                                               highs.get(vs[0].model))]

        with ThreadPoolExecutor(min(8, max(1, len(by_model))),
                                thread_name_prefix="casstore-publish") as pool:
            for done in pool.map(publish, by_model.values()):
                for label, sent in done:
                    report.manifests_sent += sent
                    report.versions.append(label)
        for model in sorted(set(highs) - set(by_model)):  # nothing published to raise it
            dst.catalog.models_catalog.raise_high(model, highs[model])
        indexed_here = set(report.versions)  # copied or found indexed at dst
        placed = {_label(v): v.id.hex() for v in versions if _label(v) in indexed_here}
        for ref in refs:
            for model in sorted({v.model for v in versions}):
                _copy_ref(src, mover, model, ref, report, placed)
    report.seconds = time.perf_counter() - t0
    return report


def _known_at_destination(dst: StoreContext, models: set[str]) -> dict[str, set[Digest]]:
    """Per model, the chunks the destination's newest versions vouch for (a stored version
    has all its chunks): the versions a new one most likely derives from, read in one batch,
    however long the history there (a commit counts what is new to its model against its
    parent and the newest versions too). Chunks of older versions are found by asking."""
    known: dict[str, set[Digest]] = {}
    for model in models:
        known[model] = set()
        try:
            versions = dst.catalog.newest(model, _KNOWN_VERSIONS)
        except NotFoundError:
            continue
        dst.catalog.load(versions)
        for v in versions:
            known[model] |= v.manifest.chunk_set()
    return known


def _counters(versions: Sequence[Version], per_model: dict[str, set[Digest]],
              written: dict[Digest, int]) -> dict[tuple[str, str], dict[str, int]]:
    """What each copied version adds to the destination's stats counters, as a commit would
    (:mod:`casstore.repo.stats`): the chunk objects this transfer wrote (credited to the first
    version using each), and the chunks new to its model there; of these, the ones that were
    already stored are ``found`` (their stored size, when not written here, taken as their
    size). The manifest is added when it is sent."""
    out: dict[tuple[str, str], dict[str, int]] = {}
    credited: set[Digest] = set()
    for v in versions:
        have = per_model.setdefault(v.model, set())
        objects = v.manifest.object_sizes()
        new = {d: n for d, n in objects.items() if d not in have}
        have.update(objects)
        mine = [d for d in new if d in written and d not in credited]
        credited.update(mine)
        found = [d for d in new if d not in set(mine)]
        out[v.model, v.version] = {
            "chunks": len(mine), "stored": sum(written[d] for d in mine),
            "unique": sum(new[d] for d in mine), "encoded": sum(written[d] for d in mine),
            "ref_chunks": len(new), "ref_unique": sum(new.values()),
            "ref_encoded": sum(written.get(d, new[d]) for d in new),
            "found_chunks": len(found), "found_unique": sum(new[d] for d in found),
        }
    return out


def _already_there(src: StoreContext, dst: StoreContext, vs: list[Version],
                   known: set[Digest], report: TransferReport) -> set[str]:
    """Of ``vs`` (indexed at ``dst`` when asked), the labels of those still indexed there:
    complete there, their missing tags and their signatures are copied. A different version
    under the same number is refused. Index entries are read in one batch, tags asked about
    in one, signatures copied together: a re-run push of N versions waits for a few round
    trips, not N."""
    if not vs:
        return set()
    keys = [version_key(v.model, v.version) for v in vs]
    raws = dst.store.get_found(keys)  # one removed since it was asked about: left out
    there = []
    for v, k in zip(vs, keys):
        if k not in raws:
            continue
        held = parse_index_entry(k, raws[k])
        if held != v.id:
            raise AlreadyExistsError(
                f"{v.model}@{v.version} exists at {dst.store.url} with different content "
                f"({held.short()} vs {v.id.short()}); refusing to overwrite"
            )
        there.append(v)
    tags = {tag_key(v.model, t, v.version): (v, t) for v in there for t in v.tags}
    have = dst.store.exists_many(tags) if tags else set()
    lacking: dict[tuple[str, str], list[str]] = {}
    for k, (v, t) in tags.items():
        if k not in have:
            lacking.setdefault((v.model, v.version), []).append(t)
    for (model, semver), missing in lacking.items():  # rare: tagged at the source since
        dst.catalog.models_catalog.change_tags(model, semver, add=missing)
    _copy_signatures(src, dst, there)
    for v in there:
        known |= v.manifest.chunk_set()
        report.versions.append(_label(v))
    return {_label(v) for v in there}


def _send_chunks(
    src: StoreContext,
    dst: StoreContext,
    versions: Sequence[Version],
    known: set[Digest],
    reader: ChunkReader,
    report: TransferReport,
    progress: Callable[[int], None] | None,
    *,
    fresh: bool = False,
) -> dict[Digest, int]:
    """Every chunk ``versions`` need that ``dst`` lacks, as one stream: the small chunks of
    many versions share batches (each batch's requests all in flight at once, up to the
    backend's concurrency), and the next batch is read while the current one is verified and
    written. A batch of deltas follows the batch holding their bases (``delta_rounds``), so a
    delta lands only after its base, and a base is kept (as stored) only until its deltas
    are checked. Objects held at once: a batch, the bases kept and, when they fit in
    ``_HELD_BYTES`` together, the next batch. Returns the chunks written and their sizes as
    stored."""
    written: dict[Digest, int] = {}
    chains: dict[Digest, tuple[Digest, ...]] = {}
    sizes: dict[Digest, int] = {}
    chunks: set[Digest] = set()
    for v in versions:
        chains.update(v.manifest.delta_chains())
        sizes.update(v.manifest.object_sizes())
        chunks |= v.manifest.chunk_set()
    needed = depth_order((d for d in chunks if d not in known), chains)
    missing = needed if fresh else _missing_at(dst, needed)
    report.chunks_present += len(chunks) - len(missing)
    children = delta_children(missing, chains)
    batches = list(delta_rounds(missing, sizes, _BATCH_BYTES, children))
    bases = KeptBases(children, chains)

    def read(batch: list[Digest]) -> dict[str, bytes]:
        return src.store.get_many([chunk_key(d) for d in batch])

    def check(d: Digest, raw: bytes) -> None:  # never forward corrupt bytes
        bases.checked(d, reader.check(raw, d, sizes[d], bases=bases, keep=bases.needed(d)))

    # a remote source's next batch is fetched while this one is checked and written, when
    # the objects held then (this batch, the bases kept for deltas, the next batch) fit in
    # _HELD_BYTES; a local source reads in a fraction of the time checking and writing take
    prefetch = not src.store.capabilities.local
    with ThreadPoolExecutor(1, thread_name_prefix="casstore-transfer") as pool:
        ahead = pool.submit(read, batches[0]) if batches and prefetch else None
        for i, batch in enumerate(batches):  # a batch is written before the next deeper one
            raws = ahead.result() if ahead is not None else read(batch)
            ahead = None
            if prefetch and i + 1 < len(batches):
                held = sum(len(r) for r in raws.values()) + bases.nbytes
                if held + sum(sizes[d] for d in batches[i + 1]) <= _HELD_BYTES:
                    ahead = pool.submit(read, batches[i + 1])
            for d in batch:  # send them as stored (encoded)
                check(d, raws[chunk_key(d)])
                written[d] = len(raws[chunk_key(d)])
            dst.store.put_many(raws, sync=False)
            report.chunks_sent += len(batch)
            sent = sum(len(r) for r in raws.values())
            report.bytes_sent += sent
            del raws
            if progress:
                progress(sent)
    dst.store.flush()
    known |= chunks
    return written


def _publish_model(src: StoreContext, dst: StoreContext, vs: list[Version],
                   counters: dict[tuple[str, str], dict[str, int]],
                   high: str | None = None) -> list[tuple[str, int]]:
    """Index one model's copied versions at ``dst`` as commits with explicit numbers do:
    manifests, reservations, index entries, tags, then finalize; each version becomes
    visible complete. Done for all of ``vs`` at once (requests of a step in flight together,
    the catalog changed by one compare-and-swap per step), so publishing N versions waits
    for a handful of round trips, not five per version. Signatures follow, before any ref
    here can move to them. Returns each version's label and manifests sent (0 or 1); a
    number taken at ``dst`` by a different version is refused once the rest are published."""
    model, cat = vs[0].model, dst.catalog.models_catalog
    keys = [manifest_key(v.id) for v in vs]
    raws = src.store.get_many(keys)
    for v, k in zip(vs, keys):
        if Digest.of(raws[k]) != v.id:
            raise CasstoreError(f"{model}@{v.version}: source manifest does not match its "
                                "digest")
    with ThreadPoolExecutor(min(len(vs), dst.store.capabilities.concurrent_io),
                            thread_name_prefix="casstore-publish") as pool:
        sent, _ = together(  # numbers expired there are refused: asked meanwhile
            dst.store, lambda: list(pool.map(lambda k: int(dst.store.put_if_absent(k, raws[k])),
                                             keys)),
            lambda: _check_not_expired(dst, vs))
        cat.reserve_numbers(model, [v.version for v in vs], dst.actor)
        clashes = [c for c in pool.map(lambda v: _index_entry(dst, v), vs) if c is not None]
        clashed = {c.version for c in clashes}
        ours = [v for v in vs if v.version not in clashed]
        list(pool.map(lambda k: dst.store.put_if_absent(k, b""),
                      [tag_key(model, t, v.version) for v in ours for t in v.tags]))
        finals = [(c.version, cat.published(model, c.version), None) for c in clashes]
        for v, k, n in zip(vs, keys, sent):
            if v.version not in clashed:
                c = counters[model, v.version]
                finals.append((v.version, Entry(v.summary, tuple(sorted(v.tags))),
                               {**c, "ref_manifests": len(raws[k]),
                                "stored": c["stored"] + n * len(raws[k])}))
        cat.finalize_many(model, finals, high=high)
    _copy_signatures(src, dst, ours)
    if clashes:
        v = clashes[0]
        raise AlreadyExistsError(f"{model}@{v.version} was created at {dst.store.url} "
                                 "meanwhile with different content")
    return [(_label(v), n) for v, n in zip(vs, sent) if v.version not in clashed]


def _index_entry(dst: StoreContext, v: Version) -> Version | None:
    """Write ``v``'s index entry at ``dst``; ``v`` back if a different version holds it."""
    index = json.dumps({"manifest": v.id.hex(), "name": v.name}).encode()
    if dst.store.put_if_absent(version_key(v.model, v.version), index):
        return None
    key = version_key(v.model, v.version)
    return None if parse_index_entry(key, dst.store.get(key)) == v.id else v


def _check_not_expired(dst: StoreContext, vs: list[Version]) -> None:
    """A number the destination used for another version, since expired, is not reused."""
    marks = dst.store.exists_many(expired_key(v.model, v.version) for v in vs)
    for v in vs:
        if expired_key(v.model, v.version) not in marks:
            continue
        try:
            mark = json.loads(dst.store.get(expired_key(v.model, v.version)))
        except (NotFoundError, ValueError):
            continue
        if isinstance(mark, dict) and mark.get("manifest") not in (None, v.id.hex()):
            raise AlreadyExistsError(
                f"{v.model}@{v.version} at {dst.store.url} was another version, since expired "
                "by GC; version numbers are never reused"
            )


_BATCH_BYTES = 16 << 20
_PUBLISH_GROUP = 64  # versions published together (their manifests are held at once)
_KNOWN_VERSIONS = 8  # newest versions at the destination whose manifests are read
_HELD_BYTES = 2 * _BATCH_BYTES
_PROBE = 16


def _missing_at(dst: StoreContext, needed: list[Digest]) -> list[Digest]:
    """The chunks ``dst`` lacks. A small probe first: when none of it exists (a fresh
    destination), asking about every other chunk would only cost requests."""
    if not needed:
        return []
    probe, rest = needed[:_PROBE], needed[_PROBE:]
    found = dst.store.exists_many([chunk_key(d) for d in probe])
    if rest and found:
        found |= dst.store.exists_many([chunk_key(d) for d in rest])
    return [d for d in needed if chunk_key(d) not in found]


def _copy_signatures(src: StoreContext, dst: StoreContext, vs: list[Version]) -> None:
    """Signatures travel with their versions (one never overwrites a signature there):
    found by one listing per model (:func:`~casstore.ops.signing.signatures_of`), written
    at once; an object whose name is not a key id is not a signature and stays behind."""
    wanted: dict[str, set[str]] = {}
    for v in vs:
        wanted.setdefault(v.model, set()).add(v.version)
    copies = {signature_key(model, semver, keyid): raw
              for model, versions in wanted.items()
              for semver, bundles in signatures_of(src, model, versions).items()
              for keyid, raw in bundles.items() if is_keyid(keyid)}
    if copies:
        with ThreadPoolExecutor(min(len(copies), 8), thread_name_prefix="casstore-publish"
                                ) as pool:
            list(pool.map(lambda kv: dst.store.put_if_absent(*kv), copies.items()))


def _label(v: Version) -> str:
    return f"{v.model}@{v.version}"


def _copy_ref(src: StoreContext, mover: Rollout, model: str, ref: str,
              report: TransferReport, placed: dict[str, str]) -> None:
    """Move ``ref`` at the destination as at the source, once each version it names is
    indexed there (then complete: chunks go in first); ``placed``: label -> manifest of the
    versions this transfer indexed or found indexed there (no need to ask again)."""
    dst = mover.ctx
    value = src.refs.get(model, ref)
    rec, _ = dst.refs.read(model, ref)
    if rec is not None and rec.value == value:
        return  # there already (its versions were there when it moved): nothing to ask
    for t in value.versions():
        if placed.get(f"{model}@{t.version}") == t.manifest:
            continue
        v = dst.get_version(model, t.version)
        if v.id.hex() != t.manifest:
            raise AlreadyExistsError(f"{model}@{ref}: {t.version} differs at {dst.store.url}")
    try:
        mover.move(
            model,
            ref,
            value,
            expected_seq=None if rec is None else rec.seq,
            reason=f"replicated from {src.store.url}",
            trigger="replicate",
            op="replicate",
        )
    except ConflictError:
        # moved meanwhile: fine if to this very value (two pushes of one ref), else the
        # other move stands and this transfer says so
        now, _ = dst.refs.read(model, ref)
        if now is None or now.value != value:
            raise
        return
    report.refs_moved.append(f"{model}@{ref}")


# -- rollback across buckets ---------------------------------------------------------------
@dataclass
class StoreOutcome:
    store: str
    ok: bool
    message: str
    result: dict[str, Any] | None = None
    move: MoveResult | None = None  # the switch, when it was tried


def rollback_across(
    repos: Sequence[Rollout],
    model: str,
    *,
    to: str | None,
    ref: str = "current",
    reason: str = "",
    verify_data: bool = False,
    op: str = "rollback",
    verify: bool = False,
) -> list[StoreOutcome]:
    """Move ``ref`` to the same version in every store, or in none if any cannot take it.

    The target is resolved in the first store (``to=None``: its previous stable version) and
    identified by semantic version and manifest digest. Every store is checked first (the
    version exists there with the same digest and is complete); only if all pass does each
    store's ref move by its own compare-and-swap. A store whose switch fails keeps its old
    ref and is reported; the others are not undone (each store's ref is its own truth).
    """
    if not repos:
        raise InvalidInputError("no stores given")
    first = repos[0]
    target = (
        first.ctx.get_version(model, to) if to is not None else first.previous_stable(model, ref)
    )

    def check(r: Rollout) -> StoreOutcome:
        try:
            there = r.ctx.get_version(model, target.version)
            if there.id != target.id:
                raise AlreadyExistsError(f"{target.version} has different content here")
            problems = r.check_version(there, chunks=verify, read_data=verify_data)
            if problems:
                raise CasstoreError("; ".join(problems[:3]))
            return StoreOutcome(r.ctx.store.url, True, "target complete")
        except CasstoreError as e:
            return StoreOutcome(r.ctx.store.url, False, f"check failed: {e}")

    def switch(r: Rollout) -> StoreOutcome:
        try:
            res: MoveResult = r.set_ref(model, ref, target.version, reason=reason,
                                        trigger="rollback", op=op, verify_data=False)
            return StoreOutcome(r.ctx.store.url, res.ok, res.message, res.to_dict(), res)
        except CasstoreError as e:
            return StoreOutcome(r.ctx.store.url, False, f"switch failed, ref untouched: {e}")

    # the stores are checked, then switched, all at once: a rollback across buckets takes
    # about as long as its slowest bucket, not the sum of them
    with ThreadPoolExecutor(min(8, len(repos)), thread_name_prefix="casstore-rollback") as pool:
        checks = list(pool.map(check, repos))
        if not all(c.ok for c in checks):
            return [
                StoreOutcome(
                    c.store,
                    False,
                    c.message if not c.ok else "not switched: another store failed its check",
                )
                for c in checks
            ]
        return list(pool.map(switch, repos))


__all__ = [
    "StoreOutcome",
    "TransferReport",
    "rollback_across",
    "select_versions",
    "transfer",
]
