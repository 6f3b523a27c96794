"""Encoded stores end to end: commits store float tensors as split streams and deltas to the
parent version; checkout, GC, verify, repair and push/pull keep every byte (local and S3)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import blake3
import numpy as np
import pytest

from casstore import Repository
from casstore.ops.gc import GarbageCollector
from casstore.ops.retention import RetentionPolicy
from casstore.ops.verify import repair, verify
from casstore.repo.chunks import ENC_DELTA, parse_header
from casstore.repo.config import StoreConfig
from casstore.repo.keys import CHUNKS, chunk_key
from casstore.store import open_store

N = 1 << 16  # floats per tensor: 256 KiB tensors


def _save(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    header, off, body = {}, 0, []
    for name, a in tensors.items():
        dtype = {"float32": "F32", "int32": "I32"}[str(a.dtype)]
        header[name] = {"dtype": dtype, "shape": list(a.shape),
                        "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
        body.append(a.tobytes())
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(body))
    return path


def _training(tmp_path: Path, steps: int, seed: int = 0) -> list[Path]:
    """Checkpoints whose every weight moves a little between saves (like AdamW steps)."""
    rng = np.random.default_rng(seed)
    w = {f"layer.{i}.weight": (rng.standard_normal(N) * 0.02).astype(np.float32)
         for i in range(3)}
    out = []
    for s in range(steps):
        w = {k: (v + rng.standard_normal(N).astype(np.float32) * 2e-4).astype(np.float32)
             for k, v in w.items()}
        out.append(_save(tmp_path / f"step{s}" / "model.safetensors", w))
    return out


def _digest(p: Path) -> str:
    return blake3.blake3(p.read_bytes()).hexdigest()


def _checks_out(repo: Repository, version: str, src: Path, tmp_path: Path) -> None:
    dest = tmp_path / f"co-{version}"
    repo.checkout("m", version, dest)
    assert _digest(dest / src.name) == _digest(src)


@pytest.fixture
def encoded(store_url: str) -> Repository:
    r = Repository(store_url)
    r.init(StoreConfig(encoding="max"))  # max: deltas on S3 too
    yield r
    r.store.close()


def test_training_series_is_stored_below_its_size_and_reads_back(encoded, tmp_path):
    files = _training(tmp_path, 4)
    for f in files:
        encoded.commit("m", [f])
    versions = encoded.versions("m")
    for v, f in zip(versions, files):
        _checks_out(encoded, v.version, f, tmp_path)
    assert not versions[0].manifest.has_deltas and versions[1].manifest.has_deltas
    stored = sum(i.size for i in encoded.store.list(CHUNKS))
    logical = sum(f.stat().st_size for f in files)
    assert stored < 0.85 * logical
    assert verify(encoded.ctx, read_data=True).ok


def test_delta_bases_survive_gc_until_no_delta_needs_them(tmp_path):
    repo = Repository(str(tmp_path / "store"))
    repo.init(StoreConfig(encoding="fast"))
    v1f, v2f = _training(tmp_path, 2)
    v1 = repo.commit("m", [v1f]).version
    v2 = repo.commit("m", [v2f], ref="current").version
    deltas = {d: chain for f in v2.manifest.files for d, chain in f.deltas.items()}
    bases = {c for chain in deltas.values() for c in chain}
    assert deltas and bases <= {d for f in v1.manifest.files for d, _ in f.chunks}
    gc = GarbageCollector(repo.ctx, grace_seconds=0)
    policy = RetentionPolicy(keep_last=1, keep_reflog_seconds=0)
    plan = gc.plan(policy)
    assert [e.version for e in plan.expire] == [v1.version]
    gc.execute(plan)
    assert [v.version for v in repo.versions("m")] == [v2.version]
    for b in bases:  # the parent is gone, the chunks its child's deltas need are not
        assert repo.store.exists(chunk_key(type(v1.id)(b)))
    _checks_out(Repository(str(tmp_path / "store")), v2.version, v2f, tmp_path)
    assert verify(repo.ctx, read_data=True).ok
    # a new version that shares nothing: once the child expires too, the bases go
    rng = np.random.default_rng(7)
    other = _save(tmp_path / "other" / "model.safetensors",
                  {"x": rng.integers(0, 9, N, dtype=np.int32)})
    v3 = repo.commit("m", [other], ref="current").version
    gc.execute(gc.plan(policy))
    left = {i.key for i in repo.store.list(CHUNKS)}
    assert left == {chunk_key(d) for d in v3.manifest.chunk_set()}
    _checks_out(repo, v3.version, other, tmp_path)


def test_verify_reports_a_damaged_base_and_repair_restores_it(tmp_path):
    a, b = Repository(str(tmp_path / "a")), Repository(str(tmp_path / "b"))
    for r in (a, b):
        r.init(StoreConfig(encoding="fast"))
    files = _training(tmp_path, 2)
    for f in files:
        a.commit("m", [f])
    from casstore.ops.transfer import transfer

    transfer(a.ctx, b.ctx, a.versions("m"))
    v2 = a.versions("m")[1]
    chain = next(c for f in v2.manifest.files for c in f.deltas.values())
    base_key = chunk_key(type(v2.id)(chain[0]))
    raw = bytearray(a.store.get(base_key))
    raw[-1] ^= 0xFF
    a.store.put(base_key, bytes(raw))
    report = verify(a.ctx, read_data=True)
    assert not report.ok
    assert any(p.kind == "corrupt" and "1.0.1" in str(p.versions) for p in report.problems)
    fixed = repair(a.ctx, b.store)
    assert fixed.after is not None and fixed.after.ok
    _checks_out(a, "1.0.1", files[1], tmp_path)


def test_push_pull_send_encoded_objects_as_stored_bases_first(tmp_path, s3_url):
    src = Repository(str(tmp_path / "src"))
    src.init(StoreConfig(encoding="fast"))
    files = _training(tmp_path, 3)
    for f in files:
        src.commit("m", [f])
    from casstore.ops.transfer import transfer

    dst = Repository(open_store(s3_url))
    report = transfer(src.ctx, dst.ctx, src.versions("m"))
    stored = sum(i.size for i in src.store.list(CHUNKS))
    assert report.bytes_sent == stored  # encoded bytes as stored, not decoded ones
    for key in (i.key for i in src.store.list(CHUNKS)):
        assert dst.store.get(key) == src.store.get(key)
    back = Repository(str(tmp_path / "back"))
    transfer(dst.ctx, back.ctx, dst.versions("m"))
    for v, f in zip(back.versions("m"), files):
        _checks_out(back, v.version, f, tmp_path)
    deltas = [parse_header(src.store.get(i.key)) for i in src.store.list(CHUNKS)]
    assert any(h.encoding == ENC_DELTA for h in deltas)


def test_cli_init_encoding_show_and_stats(tmp_path):
    from casstore.repo.config import load_config
    from tests.cli_helpers import run

    store = tmp_path / "store"
    assert run("init", "--encoding", "off", store=store).code == 0
    files = _training(tmp_path, 2)
    run("commit", "raw", files[0], store=store)
    r = run("show", "raw", "1.0.0", "--json", store=store)
    assert r.json()["storage"]["encodings"] == {"raw": 3}  # off: raw chunks
    r = run("init", "--encoding", "fast", "--json", store=store)
    assert r.json()["encoding"] == "fast" and r.json()["format_version"] == 2
    for f in files:
        assert run("commit", "m", f, store=store).code == 0
    r = run("show", "m", "1.0.1", store=store)
    assert r.code == 0 and "3 deltas need 3 chunks of other versions" in r.out, r.out
    st = run("show", "m", "1.0.1", "--json", store=store).json()["storage"]
    assert st["delta_objects"] == 3 and st["longest_chain"] == 1
    assert st["stored_bytes"] < 0.9 * st["chunk_bytes"]
    d = run("stats", "--json", store=store).json()
    logical = 3 * files[0].stat().st_size
    assert d["logical_bytes"] == logical
    assert d["saved_by_dedup"] == logical - d["unique_bytes"] > 0  # raw 1.0.0 == m 1.0.0
    assert d["saved_by_encoding"] == d["unique_bytes"] - d["encoded_bytes"] > 0
    assert "saved by dedup" in run("stats", store=store).out
    # switching back to off keeps the store at format 2: its chunks stay encoded
    assert run("init", "--encoding", "off", store=store).code == 0
    cfg = load_config(open_store(str(store)))
    assert cfg is not None and cfg.encoding == "off" and cfg.format_version == 2
    run("commit", "m", files[0], store=store)
    assert run("init", "--chunker", "tensor", store=store).code == 0  # encoding kept
    assert load_config(open_store(str(store))).encoding == "off"


@pytest.mark.parametrize("damage", ["base", "delta"])
def test_a_damaged_delta_or_base_fails_checkout_and_names_no_file(tmp_path, damage):
    """Checkout decodes a delta block by block next to its base and hashes both as it goes;
    blocks reach only the hidden temporary file, so a mismatch found at the end of a chunk
    fails the checkout and no file gets its name (nor is a temporary file left)."""
    repo = Repository(str(tmp_path / "store"))
    repo.init(StoreConfig(encoding="fast"))
    files = _training(tmp_path, 2)
    for f in files:
        repo.commit("m", [f])
    v2 = repo.versions("m")[1]
    delta, chain = next((d, c) for f in v2.manifest.files for d, c in f.deltas.items())
    key = chunk_key(type(v2.id)(chain[0] if damage == "base" else delta))
    raw = bytearray(repo.store.get(key))
    assert parse_header(raw).inner == 2  # split streams: the middle ones are raw mantissas
    raw[len(raw) // 2] ^= 0x01  # the object still decodes, to the wrong bytes
    repo.store.put(key, bytes(raw))
    out = tmp_path / "out"
    out.mkdir()
    from casstore.errors import CorruptObjectError

    with pytest.raises(CorruptObjectError, match="does not match its digest"):
        repo.checkout("m", v2.version, out)
    assert list(out.iterdir()) == []
    if damage == "delta":  # the base is fine: its own version checks out
        _checks_out(repo, "1.0.0", files[0], tmp_path)
