"""In-process ingest/restore of a checkpoint series through casstore's chunk layer, with an
encoding policy (off / fast / max) and deltas to the previous file, as a commit does.

    python -m benchmarks.encoded_ingest FILE ... [--policy fast] [--store DIR]

Each file is written as one version whose parent is the previous file (same tensor names,
dtypes, shapes -> delta candidates); timings include ``store.flush()`` and ``os.sync()``.
Restore reads every version back through ``ChunkReader`` (verified) into files, then syncs.
Prints JSON: logical, unique (dedup) and stored bytes, ingest and restore MB/s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import time
from pathlib import Path

from casstore.chunking import DEFAULT_CHUNKER, get_chunker
from casstore.chunking import encodings as E
from casstore.repo.chunks import ChunkReader, ChunkWriter
from casstore.repo.deltas import DeltaIndex
from casstore.repo.inputs import FileSource
from casstore.repo.keys import CHUNKS
from casstore.repo.manifest import FileEntry, Manifest, TensorEntry
from casstore.store import open_store


def run(files: list[Path], policy: str, root: Path) -> dict:
    shutil.rmtree(root, ignore_errors=True)
    store = open_store(str(root))
    pol = E.get_policy(policy)
    chunker = get_chunker(DEFAULT_CHUNKER)
    parent: Manifest | None = None
    manifests: list[Manifest] = []
    t0 = time.perf_counter()
    for i, path in enumerate(files):
        deltas = DeltaIndex(parent, pol) if parent is not None and pol.enabled else None
        w = ChunkWriter(store, policy=pol, deltas=deltas,
                        known=parent.chunk_set() if parent else ())
        with FileSource(path) as src:
            layout, chunks = w.add_file(chunker, src.read_at, src.size, path.name,
                                        view_at=src.view_at)
        w.close()
        entry = FileEntry(
            path=path.name, size=path.stat().st_size, format=layout.format,
            chunker=chunker.name, chunks=tuple((bytes(d), n) for d, n in chunks),
            tensors=tuple(TensorEntry(name=t.name, dtype=t.dtype, shape=t.shape,
                                      offset=t.offset, length=t.length) for t in layout.tensors),
            inline={bytes(d): w.inline[d] for d, _ in chunks if d in w.inline},
            deltas=w.deltas_of(chunks))
        parent = Manifest(model="m", version=f"1.0.{i}", name=f"m_v1.0.{i}_x",
                          created_at=dt.datetime.now(dt.timezone.utc), files=(entry,))
        manifests.append(parent)
    os.sync()
    ingest = time.perf_counter() - t0
    logical = sum(p.stat().st_size for p in files)
    unique = {}
    for m in manifests:
        unique.update(m.files[0].chunks)
    stored = sum(i.size for i in store.list(CHUNKS)) + sum(
        len(x) for m in manifests for x in m.files[0].inline.values())
    out_dir = root.parent / f"{root.name}-restore"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    reader = ChunkReader(store)
    t0 = time.perf_counter()
    for i, m in enumerate(manifests):
        reader.remember_inline(m)
        f = m.files[0]
        with open(out_dir / f"{i}-{f.path}", "wb") as fh:
            for payload in reader.stream(f.chunk_digests(), sizes=[n for _, n in f.chunks]):
                fh.write(payload)
    os.sync()
    restore = time.perf_counter() - t0
    for i, (m, p) in enumerate(zip(manifests, files)):
        assert (out_dir / f"{i}-{m.files[0].path}").read_bytes() == p.read_bytes(), p
    shutil.rmtree(out_dir)
    store.close()
    return {"policy": policy, "files": len(files), "logical_bytes": logical,
            "dedup_bytes": sum(unique.values()), "stored_bytes": stored,
            "stored_vs_logical": round(stored / logical, 4),
            "ingest_MBps": round(logical / ingest / 1e6, 1),
            "restore_MBps": round(logical / restore / 1e6, 1), "restored_identical": True}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--policy", default="fast", choices=list(E.POLICIES))
    ap.add_argument("--store", type=Path, default=Path("/tmp/casstore-encoded-ingest"))
    a = ap.parse_args()
    print(json.dumps(run(a.files, a.policy, a.store), indent=2))
