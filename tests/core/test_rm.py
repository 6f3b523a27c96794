"""Deleting versions (``Repository.rm`` / ``casstore rm``): refused while a ref points at one,
and GC then reclaims the chunks only the removed versions used."""

from __future__ import annotations

from pathlib import Path

import pytest

from casstore import ConflictError, InvalidInputError, NotFoundError, Repository
from casstore.ops.retention import RetentionPolicy
from casstore.ops.verify import verify
from casstore.repo.keys import chunk_key
from tests import series
from tests.cli_helpers import run


def chain(repo: Repository, tmp_path: Path, n: int) -> list[str]:
    base = series.tensors(n=6, size=32 << 10)
    out = []
    for i in range(n):
        f = series.save(tmp_path / f"c{i}" / "w.safetensors", series.finetune(base, seed=i + 10))
        out.append(repo.commit("m", [f], tags=["nightly"]).version.version)
    return out


def keys(repo: Repository) -> set[str]:
    return {i.key for i in repo.store.list("")}


def test_rm_expires_and_gc_reclaims_unique_chunks(repo: Repository, tmp_path: Path):
    vs = chain(repo, tmp_path, 3)  # current -> 1.0.0 (the first version)
    doomed = repo.get_version("m", vs[1])
    others = repo.get_version("m", vs[0]).manifest.chunk_set() | repo.get_version(
        "m", vs[2]).manifest.chunk_set()
    unique = doomed.manifest.chunk_set() - others
    assert unique  # the fine-tune changed some tensors
    out = repo.rm("m", vs[1])
    assert [e.version for e in out.versions] == [vs[1]] and out.manifest_bytes > 0
    assert [v.version for v in repo.history("m")] == [vs[0], vs[2]]
    with pytest.raises(NotFoundError):
        repo.get_version("m", vs[1])
    # keep everything the policy knows of: only the removed version's own chunks go
    plan, report = repo.gc(RetentionPolicy(keep_last=100), grace_seconds=0)
    assert report is not None and not plan.expire
    assert {c for c, _ in plan.chunks} == {d.hex() for d in unique}
    assert not any(repo.store.exists(chunk_key(d)) for d in unique)
    assert all(repo.store.exists(chunk_key(d)) for d in others)
    assert verify(repo.ctx, read_data=True).ok  # expired, not lost


def test_rm_refused_while_a_ref_points_at_it(repo: Repository, tmp_path: Path):
    vs = chain(repo, tmp_path, 4)
    repo.promote("m", vs[1], ref="production")
    repo.promote("m", vs[2], ref="canary")
    repo.start_split("m", vs[3], ref="canary", steps=(0.1, 1.0))
    before = keys(repo)
    for target, ref in ((vs[0], "current"), (vs[1], "production"), (vs[2], "canary"),
                        (vs[3], "canary")):
        with pytest.raises(InvalidInputError, match=f"v{target} is the target of ref {ref}"):
            repo.rm("m", target)
    # one referenced version among several: none removed
    with pytest.raises(InvalidInputError, match="nothing was removed"):
        repo.rm("m", vs[3], vs[1])
    assert keys(repo) == before
    repo.abort("m", ref="canary")
    repo.rm("m", vs[3])  # no ref points at it any more (the reflog does not protect it)
    assert vs[3] not in [v.version for v in repo.history("m")]


def test_rm_unknown_version_and_dry_run(repo: Repository, tmp_path: Path):
    vs = chain(repo, tmp_path, 2)
    before = keys(repo)
    with pytest.raises(NotFoundError):
        repo.rm("m", vs[1], "9.9.9")
    with pytest.raises(InvalidInputError):
        repo.rm("m")
    out = repo.rm("m", vs[1], f"v{vs[1]}", dry_run=True)
    assert [e.version for e in out.versions] == [vs[1]] and out.dry_run
    assert keys(repo) == before


def test_rm_refused_while_gc_sweeps(repo: Repository, tmp_path: Path):
    vs = chain(repo, tmp_path, 2)
    with repo.leases.sweep(), pytest.raises(ConflictError, match="another garbage collection"):
        repo.rm("m", vs[1])
    assert len(repo.history("m")) == 2


def test_rollback_to_a_removed_version_is_refused(repo: Repository, tmp_path: Path):
    vs = chain(repo, tmp_path, 3)
    repo.promote("m", vs[1])
    repo.promote("m", vs[2])
    repo.rm("m", vs[1])  # the reflog still names it; rm does not wait for the reflog window
    with pytest.raises(NotFoundError):
        repo.rollback("m", to=vs[1])
    assert repo.resolve("m").version == vs[2]


def test_cli_rm(tmp_path: Path):
    store = tmp_path / "store"
    repo = Repository(str(store))
    vs = chain(repo, tmp_path, 3)
    r = run("rm", "m", vs[0], store=store)
    assert r.code == 2 and "target of ref current" in r.err and r.err.count("\n") == 1
    r = run("rm", "m", vs[1], "--dry-run", "--json", store=store)
    assert r.code == 0 and r.json() == {"model_name": "m", "removed": [vs[1]], "manifest_bytes": 0,
                                        "dry_run": True}
    r = run("rm", "m", vs[1], vs[2], store=store)
    assert r.code == 0 and f"removed m v{vs[1]}" in r.out and f"removed m v{vs[2]}" in r.out
    assert [v.version for v in Repository(str(store)).history("m")] == [vs[0]]
    assert run("rm", "m", "7.7.7", store=store).code == 3
