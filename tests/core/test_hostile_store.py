"""Issue 18, defect 9: hostile or damaged store content. Every read checks sizes against the
manifest; nothing spins, returns wrong bytes or prints a traceback; ``verify`` reports each
problem with the versions it affects. Each case is run through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import msgpack
import pytest

from casstore import Repository
from casstore.digest import Digest
from casstore.repo.keys import manifest_key, version_key
from casstore.testing.hostile import bounded
from tests import series
from tests.cli_helpers import run

READS = [
    ("log", ["log", "m"]),
    ("show", ["show", "m", "1.0.0"]),
    ("checkout", ["checkout", "m", "1.0.0", "-o", "{tmp}/out"]),
    ("cat", ["cat", "m", "1.0.0", "w.safetensors"]),
]


def _store(tmp_path: Path) -> tuple[Path, Repository]:
    store = tmp_path / "store"
    repo = Repository(str(store))
    # chunks of 64 KiB tensors: several chunk objects per file, plus an inline header
    repo.commit("m", [series.save(tmp_path / "v1" / "w.safetensors", series.tensors(seed=1))])
    repo.commit("m", [series.save(tmp_path / "v2" / "w.safetensors", series.tensors(seed=2))])
    return store, repo


def _forge(repo: Repository, semver: str, change) -> None:
    """Rewrite a version's manifest (bypassing validation) and point its index entry at it."""
    v = repo.get_version("m", semver)
    data = msgpack.unpackb(repo.store.get(manifest_key(v.id)), raw=False)
    change(data)
    raw = msgpack.packb(data, use_bin_type=True)
    mid = Digest.of(raw)
    repo.store.put(manifest_key(mid), raw)
    repo.store.put(version_key("m", semver),
                   json.dumps({"manifest": mid.hex(), "name": v.name}).encode())


def _more_bytes_than_chunks(data) -> None:
    data["files"][0]["size"] += 1000


def _sizes_lie(data) -> None:
    chunks = data["files"][0]["chunks"]
    big = [i for i, (_, n) in enumerate(chunks) if n > 4096]
    a, b = big[0], big[1]  # move 100 bytes from one chunk's size to the next: same total
    chunks[a][1] += 100
    chunks[b][1] -= 100


def _bad_inline(data) -> None:
    inline = data["files"][0]["inline"]
    d = next(iter(inline))
    inline[d] = bytes([inline[d][0] ^ 1]) + inline[d][1:]


def _damage(kind: str, store: Path, repo: Repository) -> None:
    if kind == "more_bytes_than_chunks":
        _forge(repo, "1.0.0", _more_bytes_than_chunks)
    elif kind == "chunk_sizes_lie":
        _forge(repo, "1.0.0", _sizes_lie)
    elif kind == "bad_inline_chunk":
        _forge(repo, "1.0.0", _bad_inline)
    elif kind == "tag_without_version":
        (store / "models/m/tags/stable").parent.mkdir(parents=True, exist_ok=True)
        (store / "models/m/tags/stable").write_bytes(b"")
    elif kind == "index_not_json":
        (store / "models/m/versions/1.0.1").write_bytes(b"garbage")
    elif kind == "stray_file_in_versions":
        (store / "models/m/versions/README").write_bytes(b"hello")
    else:  # pragma: no cover
        raise AssertionError(kind)


DAMAGE = ["more_bytes_than_chunks", "chunk_sizes_lie", "bad_inline_chunk",
          "tag_without_version", "index_not_json", "stray_file_in_versions"]
# which damage concerns version 1.0.0 (reads of it must fail cleanly, exit 5)
BREAKS_V1 = {"more_bytes_than_chunks", "chunk_sizes_lie", "bad_inline_chunk"}


@pytest.mark.parametrize("kind", DAMAGE)
def test_defect9_hostile_store_content_reads_fail_cleanly_or_succeed(tmp_path, kind):
    store, repo = _store(tmp_path)
    good = (tmp_path / "v1" / "w.safetensors").read_bytes()
    _damage(kind, store, repo)
    for what, argv in READS:
        argv = [a.format(tmp=tmp_path) for a in argv]
        res = bounded(_check_run, argv, store, seconds=30)
        assert res.kind == "ok", f"{kind} / {what}: {res.detail}"
        r = run(*argv, store=store, binary=True)
        assert "Traceback" not in r.err and r.code != 70, (kind, what, r.err)
        if kind in BREAKS_V1 and what in ("checkout", "cat"):
            assert r.code == 5, (kind, what, r.code, r.err)  # corrupt object, never wrong bytes
        elif what == "cat":
            assert r.code == 0 and r.out == good, (kind, r.err)


def _check_run(argv: list[str], store: Path) -> None:
    r = run(*argv, store=store, binary=True)
    if r.code == 70 or "Traceback" in r.err:
        raise AssertionError(r.err)


@pytest.mark.parametrize("kind", DAMAGE)
def test_defect9_verify_reports_each_problem_with_its_versions(tmp_path, kind):
    store, repo = _store(tmp_path)
    _damage(kind, store, repo)
    r = run("verify", "--read-data", "--json", store=store)
    assert r.code == 1, r.err
    problems = json.loads(r.out)["problems"]
    assert problems, kind
    if kind in BREAKS_V1 or kind == "index_not_json":
        wanted = "m@1.0.0" if kind in BREAKS_V1 else "m@1.0.1"
        assert any(wanted in p["versions"] for p in problems), problems
    # the other version is intact: log still lists it
    log = run("log", "m", "--json", store=store)
    assert log.code == 0, log.err
    assert "1.0.1" in log.out or kind == "index_not_json"


def test_defect9_python_api_never_returns_wrong_bytes(tmp_path):
    store, repo = _store(tmp_path)
    _forge(repo, "1.0.0", _sizes_lie)
    from casstore.errors import CorruptObjectError

    with pytest.raises(CorruptObjectError):
        Repository(str(store)).open_file("m", "1.0.0", "w.safetensors").read()


def test_defect9_chunk_reader_checks_sizes(tmp_path):
    """Below the manifest: a raw chunk whose length is not what the manifest says."""
    from casstore.errors import CorruptObjectError
    from casstore.repo.chunks import decode_chunk, encode_chunk

    payload = b"x" * 5000
    raw = encode_chunk(payload)
    d = Digest.of(payload)
    assert bytes(decode_chunk(raw, d, size=5000)) == payload
    with pytest.raises(CorruptObjectError, match="manifest says 4000"):
        decode_chunk(raw, d, size=4000)


def test_defect9_gc_over_a_damaged_index_entry_deletes_nothing_a_version_needs(tmp_path):
    """GC plans from the catalog (issue 12), which still knows both versions: with an index
    entry garbled, it expires nothing and deletes no chunk or manifest either version needs."""
    store, repo = _store(tmp_path)
    _damage("index_not_json", store, repo)
    needed = {p.relative_to(store) for p in store.rglob("*")
              if p.is_file() and p.parts[len(store.parts)] in ("chunks", "manifests")}
    r = run("gc", "--keep-last", "2", "--grace", "0", store=store)
    assert r.code in (0, 5), r.err
    after = {p.relative_to(store) for p in store.rglob("*") if p.is_file()}
    assert needed <= after


def test_a_bad_inline_chunk_fails_its_own_version_only(tmp_path):
    """The chunk reader is built on first use (light commands need none). A manifest loaded
    before it has its inline chunks checked at load, as before: loading the damaged version
    fails, and the same process still reads the healthy one."""
    from casstore.errors import CorruptObjectError

    store, repo = _store(tmp_path)
    _forge(repo, "1.0.0", _bad_inline)
    fresh = Repository(str(store))
    with pytest.raises(CorruptObjectError, match="inline chunk"):
        fresh.get_version("m", "1.0.0").manifest  # noqa: B018  (loading it is the check)
    good = (tmp_path / "v2" / "w.safetensors").read_bytes()
    assert fresh.open_file("m", "1.0.1", "w.safetensors").read() == good
    # the damaged inline bytes are never served: the header chunk 1.0.0 names by digest is the
    # one 1.0.1 holds intact (same tensor names and shapes), so a read gets the true bytes
    original = (tmp_path / "v1" / "w.safetensors").read_bytes()
    assert fresh.open_file("m", "1.0.0", "w.safetensors").read() == original
