"""Storing a file's chunks now and publishing it later: the ranks of a distributed checkpoint
each chunk their shard file into the store and leave its :class:`FileEntry` under ``tmp/``;
the coordinator commits those entries as one version (``commit_sources(prechunked=...)``).

Staged entries live under ``tmp/`` so that GC reclaims the ones of abandoned checkpoints once
they are older than its grace period, like any other temporary object.
"""

from __future__ import annotations

import msgpack

from casstore.chunking import get_chunker
from casstore.chunking.encodings import get_policy
from casstore.errors import CorruptObjectError, InvalidInputError
from casstore.records import ValidationError
from casstore.repo.chunks import ChunkWriter
from casstore.repo.keys import check_name
from casstore.repo.manifest import FileEntry, TensorEntry
from casstore.repository import Repository
from casstore.torch._safetensors import SafetensorsSource

STAGING = "tmp/dcp/"


def staging_key(token: str, rank: int) -> str:
    """Where rank ``rank`` of checkpoint ``token`` leaves its staged file entry."""
    if not isinstance(rank, int) or rank < 0:
        raise InvalidInputError(f"invalid rank {rank!r}")
    return f"{STAGING}{check_name('checkpoint token', token)}/rank-{rank:05d}"


def stage_file(repo: Repository, source: SafetensorsSource) -> FileEntry:
    """Chunk and store ``source`` (deduplicated against the store) and describe it."""
    chunker = get_chunker(repo.config.chunker)
    with repo.leases.session("dcp-write"):
        writer = ChunkWriter(repo.store, policy=get_policy(repo.config.encoding))
        try:
            layout, chunks = writer.add_file(chunker, source.read_at, source.size, source.path)
            writer.close()
        except BaseException:
            writer.abort()
            raise
    extra = {}
    inline = getattr(writer, "inline", None)  # tiny chunks the writer keeps in the manifest
    if inline:
        extra["inline"] = {bytes(d): inline[d] for d, _ in chunks if d in inline}
    return FileEntry(
        **extra,
        path=source.path,
        size=source.size,
        format=layout.format,
        chunker=chunker.name,
        chunks=tuple((bytes(d), n) for d, n in chunks),
        tensors=tuple(
            TensorEntry(name=t.name, dtype=t.dtype, shape=t.shape, offset=t.offset, length=t.length)
            for t in layout.tensors
        ),
        metadata=dict(layout.metadata),
        deltas=writer.deltas_of(chunks),  # reused chunks stored as deltas keep their bases
    )


def encode_entry(entry: FileEntry) -> bytes:
    return msgpack.packb(entry.to_python(), use_bin_type=True)


def decode_entry(raw: bytes, key: str) -> FileEntry:
    try:
        return FileEntry.parse(msgpack.unpackb(raw, raw=False))
    except (ValueError, ValidationError, msgpack.ExtraData, msgpack.FormatError) as e:
        raise CorruptObjectError(f"staged file entry {key} is unreadable: {e}") from None
