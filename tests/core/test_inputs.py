"""Issue 18, defects 1, 2, 4 and 6: what a commit takes from the user's files, and how it
reports a ref it could not move. Each test is named after the defect it pins."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from casstore import InvalidInputError, Repository
from casstore.testing.hostile import bounded
from tests import series
from tests.cli_helpers import run


def _leftovers(store: Path) -> list[str]:
    """Sessions and temp files a commit must never leave behind."""
    return sorted(str(p.relative_to(store)) for p in store.rglob("*")
                  if p.is_file() and (p.parts[len(store.parts)] in ("sessions", "tmp")
                                      or ".tmp" in p.name))


# -- defect 1 ----------------------------------------------------------------------------------
def _commit_while_changing(store: Path, f: Path, size: int, change: str, tmp_path: Path) -> None:
    done = [0]

    def progress(n: int) -> None:
        done[0] += n
        if done[0] >= 512 << 10 and not (tmp_path / "changed").exists():
            (tmp_path / "changed").touch()
            with open(f, "r+b") as fh:  # what a trainer's torch.save does in place
                if change == "shrink":
                    fh.truncate(size // 3)
                else:
                    fh.seek(size // 2)
                    fh.write(os.urandom(4096))
            os.utime(f, ns=(1, 10**18))  # an mtime surely different from the first

    try:
        Repository(str(store)).commit("m", [f], progress=progress, ref="prod")
    except InvalidInputError as e:
        assert "changed while being committed" in str(e), e
        raise


@pytest.mark.parametrize("change", ["shrink", "rewrite_same_size"])
def test_defect1_input_file_shrinks_mid_commit(tmp_path, change):
    """A trainer rewriting the checkpoint during the commit: a clean error, not SIGBUS (which
    killed the process when the file was memory-mapped); nothing published or left behind."""
    store = tmp_path / "store"
    # larger than the writer's 64 MiB in-flight budget, so reading is still under way when
    # the first chunks are stored and progress is reported
    f = series.save(tmp_path / "ckpt" / "w.safetensors",
                    {f"t{i}": os.urandom(16 << 20) for i in range(6)})
    size = f.stat().st_size
    Repository(str(store)).commit("m", [series.save(tmp_path / "v0" / "w.safetensors",
                                                    series.tensors(seed=5))])

    out = bounded(_commit_while_changing, store, f, size, change, tmp_path,
                  memory=4 << 30, seconds=60)
    assert out.kind == "refused", out  # not "killed by signal 7" (SIGBUS)
    assert "changed while being committed" in out.detail
    repo = Repository(str(store))
    assert [v.version for v in repo.versions("m")] == ["1.0.0"]  # nothing published
    assert "prod" not in repo.refs.list("m")
    assert _leftovers(store) == []


def test_defect1_via_cli_exit_code(tmp_path):
    """The same through the command: one line on stderr, exit 2 (the file is bad input)."""
    from casstore.repo.inputs import FileSource

    f = series.save(tmp_path / "w.safetensors", series.tensors())
    src = FileSource(f)
    with open(f, "r+b") as fh:
        fh.truncate(100)
    with pytest.raises(InvalidInputError, match="changed while being committed"):
        src.view_at(0, 4096)
    src.close()


# -- defect 2 ----------------------------------------------------------------------------------
def test_defect2_non_utf8_file_name_is_refused_before_anything_is_stored(tmp_path):
    """Refused (exit 2, one line naming the file), not a traceback after storing chunks.

    Refusing is deliberate: version paths are text in manifests, JSON output, casstore://
    URLs and S3/Azure/GCS keys, all UTF-8; a name that is not UTF-8 could not be checked out
    faithfully on another machine, so the user renames it instead."""
    folder = tmp_path / "ckpt"
    series.save(folder / "w.safetensors", series.tensors())
    bad = os.path.join(os.fsencode(folder), b"notes-\xff.txt")
    with open(bad, "wb") as fh:
        fh.write(b"hello")
    store = tmp_path / "store"
    r = run("commit", "m", folder, store=store)
    assert r.code == 2, r.err
    assert "not valid UTF-8" in r.err and "Traceback" not in r.err
    assert not (store / "chunks").exists() or not any((store / "chunks").rglob("*"))


# -- defect 4 ----------------------------------------------------------------------------------
def _hf_snapshot(root: Path) -> Path:
    """A Hugging Face cache layout: snapshot files are symlinks into ../../blobs/."""
    blobs = root / "blobs"
    blobs.mkdir(parents=True)
    (blobs / "aaa").write_bytes(b"config")
    series.save(blobs / "bbb", series.tensors())
    snap = root / "snapshots" / "rev1"
    snap.mkdir(parents=True)
    (snap / "config.json").symlink_to("../../blobs/aaa")
    (snap / "model.safetensors").symlink_to("../../blobs/bbb")
    return snap


def test_defect4_file_symlinks_are_followed(tmp_path):
    snap = _hf_snapshot(tmp_path / "hf")
    r = run("commit", "m", snap, "--json", store=tmp_path / "store")
    assert r.code == 0, r.err
    files = run("show", "m", "latest", "--json", store=tmp_path / "store").json()
    assert files["file_count"] == 2


def test_defect4_directory_symlinks_are_followed_not_dropped(tmp_path):
    """A symlinked directory was silently left out (exit 0); now its files are committed."""
    real = tmp_path / "shards"
    series.save(real / "part-0.safetensors", series.tensors(seed=1))
    folder = tmp_path / "ckpt"
    series.save(folder / "w.safetensors", series.tensors(seed=2))
    (folder / "shards").symlink_to(real)
    store = tmp_path / "store"
    assert run("commit", "m", folder, store=store).code == 0
    out = tmp_path / "out"
    assert run("checkout", "m", "latest", "-o", out, store=store).code == 0
    assert (out / "shards" / "part-0.safetensors").read_bytes() == \
        (real / "part-0.safetensors").read_bytes()


@pytest.mark.parametrize("kind", ["loop", "broken", "fifo"])
def test_defect4_symlink_loops_broken_links_and_special_files_are_refused(tmp_path, kind):
    folder = tmp_path / "ckpt"
    series.save(folder / "sub" / "w.safetensors", series.tensors())
    if kind == "loop":
        (folder / "sub" / "again").symlink_to(folder)
        expect = "symlink loop"
    elif kind == "broken":
        (folder / "gone.safetensors").symlink_to(tmp_path / "nowhere")
        expect = "broken symlink"
    else:
        os.mkfifo(folder / "pipe")
        expect = "not a regular file"
    store = tmp_path / "store"
    r = run("commit", "m", folder, store=store)
    assert r.code == 2 and expect in r.err, r.err
    assert not store.exists() or not (store / "chunks").exists()


# -- defect 6 ----------------------------------------------------------------------------------
def test_defect6_commit_ref_reports_success_when_the_ref_moved_meanwhile(tmp_path):
    """The ref moves between the commit's read and its compare-and-swap: the move is retried
    on top (the commit succeeded; a ConflictError would make the caller store a duplicate)."""
    repo = Repository(str(tmp_path / "store"))
    repo.commit("m", [series.save(tmp_path / "v1" / "w.safetensors", series.tensors(seed=1))],
                ref="prod")
    refs = repo.refs
    # the race happens inside RefStore.move: between its read and its CAS
    real_read = refs.read
    calls = []

    def read_then_race(model, ref):
        rec, token = real_read(model, ref)
        if ref == "prod" and not calls:
            calls.append(1)
            other = Repository(str(tmp_path / "store"))
            other.refs.move(model, ref, rec.value, expected_seq="any", reason="someone else")
        return rec, token

    refs.read = read_then_race
    res = repo.commit("m", [series.save(tmp_path / "v2" / "w.safetensors",
                                        series.tensors(seed=2))], ref="prod")
    assert calls, "the race was not staged"
    assert res.ref_moved == "prod" and res.ref_error is None
    assert repo.refs.resolve("m", "prod").version == res.version.version
    assert [v.version for v in repo.versions("m")] == ["1.0.0", "1.0.1"]  # no duplicate


def test_defect6_ref_that_cannot_move_is_reported_with_the_commit_as_success(tmp_path):
    repo = Repository(str(tmp_path / "store"))
    repo.commit("m", [series.save(tmp_path / "v1" / "w.safetensors", series.tensors(seed=1))])
    from casstore.errors import ConflictError

    def always_conflict(*a, **kw):
        raise ConflictError("ref m@prod moved (now at #7); re-read and retry")

    repo.rollout.move = always_conflict
    res = repo.commit("m", [series.save(tmp_path / "v2" / "w.safetensors",
                                        series.tensors(seed=2))], ref="prod")
    assert res.ref_moved is None
    assert res.ref_error.startswith(f"committed {res.version.name}; ref 'prod' not moved")
    assert json.loads(json.dumps(res.to_dict()))["ref_error"] == res.ref_error
