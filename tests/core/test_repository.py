"""Behaviour of the Repository facade. Runs on the local store and on S3 (moto over HTTP)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from casstore import (
    AlreadyExistsError,
    CorruptObjectError,
    InvalidInputError,
    NotFoundError,
    Query,
    Repository,
    parse_condition,
)
from casstore.repo.keys import chunk_key
from tests import series


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.every_backend
def test_commit_checkout_roundtrip(repo: Repository, tmp_path: Path):
    src = series.save(tmp_path / "in" / "model.safetensors", series.tensors())
    (tmp_path / "in" / "config.json").write_text('{"hidden": 64}')
    (tmp_path / "in" / "tok" / "vocab.txt").parent.mkdir()
    (tmp_path / "in" / "tok" / "vocab.txt").write_text("a\nb\n")
    res = repo.commit("bert", [tmp_path / "in"], metrics={"accuracy": 0.9})
    v = res.version
    assert v.version == "1.0.0"
    assert v.name.startswith("bert_v1.0.0_")
    assert {f.path for f in v.manifest.files} == {
        "model.safetensors",
        "config.json",
        "tok/vocab.txt",
    }
    out = tmp_path / "out"
    repo.checkout("bert", "@current", out)
    for rel in ("model.safetensors", "config.json", "tok/vocab.txt"):
        assert sha(out / rel) == sha(tmp_path / "in" / rel)
    assert sha(src) == sha(out / "model.safetensors")


def test_dedup_across_versions_and_models(repo: Repository, tmp_path: Path):
    base = series.tensors()
    tuned = series.finetune(base)
    a = series.save(tmp_path / "a.safetensors", base)
    b = series.save(tmp_path / "b" / "a.safetensors", tuned)
    c = series.save(tmp_path / "c" / "a.safetensors", base, {"notes": "x" * 300})
    r1 = repo.commit("m", [a])
    r2 = repo.commit("m", [b])
    r3 = repo.commit("m", [c])
    r4 = repo.commit("other", [a])
    changed = sum(len(v) for k, v in tuned.items() if base[k] != v)
    assert r1.new_bytes >= sum(len(v) for v in base.values())
    assert changed <= r2.new_bytes <= changed + 4096  # only changed tensors + header
    assert r3.new_bytes < 4096  # only the longer header
    assert r4.new_bytes == 0  # another model, same file
    unique = sum(len(v) for v in base.values()) + changed
    st = repo.stats()
    assert st.versions == 4
    assert st.logical_bytes == sum(f.stat().st_size for f in (a, b, c, a))
    assert unique <= st.stored_bytes <= unique * 1.01 + (64 << 10)


def test_versions_bump_and_explicit(repo: Repository, tmp_path: Path):
    f = series.save(tmp_path / "m.safetensors", series.tensors(n=2))
    assert repo.commit("m", [f]).version.version == "1.0.0"
    assert repo.commit("m", [f], bump_part="minor").version.version == "1.1.0"
    assert repo.commit("m", [f], bump_part="major").version.version == "2.0.0"
    assert repo.commit("m", [f], version="v2.5.0").version.version == "2.5.0"
    assert repo.commit("m", [f]).version.version == "2.5.1"
    with pytest.raises(AlreadyExistsError):
        repo.commit("m", [f], version="2.5.0")
    names = [v.version for v in repo.history("m")]
    assert names == ["1.0.0", "1.1.0", "2.0.0", "2.5.0", "2.5.1"]
    full = repo.history("m")[1].name
    assert repo.get_version("m", full).version == "1.1.0"
    assert repo.get_version("m", "v1.1.0").version == "1.1.0"
    assert repo.get_version("m", "latest").version == "2.5.1"
    assert repo.get_version("m", "@current").version == "1.0.0"  # first commit sets current


def test_metadata_tags_query(repo: Repository, tmp_path: Path):
    f = series.save(tmp_path / "m.safetensors", series.tensors(n=2))
    repo.commit(
        "m",
        [f],
        metrics={"accuracy": 0.8},
        version_type="alpha",
        tags=["experimental"],
        training_data={"data_count": 10, "data_types": ["text"]},
        change_log="first",
    )
    repo.commit("m", [f], metrics={"accuracy": 0.92}, version_type="release")
    repo.commit("n", [f], metrics={"accuracy": 0.95}, version_type="beta")
    v = repo.get_version("m", "1.0.0")
    assert v.manifest.training_data.data_count == 10
    assert v.tags == ("experimental",)
    repo.tag("m", "1.0.1", "stable", "production")
    assert repo.get_version("m", "1.0.1").tags == ("production", "stable")
    repo.untag("m", "1.0.1", "production")
    assert repo.get_version("m", "1.0.1").tags == ("stable",)
    with pytest.raises(NotFoundError):
        repo.untag("m", "1.0.1", "production")
    good = repo.query(None, Query(where=[parse_condition("accuracy>=0.9")]))
    assert sorted((v.model, v.version) for v in good) == [("m", "1.0.1"), ("n", "1.0.0")]
    assert [v.version for v in repo.query("m", Query(tags=["stable"]))] == ["1.0.1"]
    assert [v.model for v in repo.query(None, Query(version_type="beta"))] == ["n"]
    d = v.to_dict()
    for key in (
        "version",
        "created_at",
        "model_name",
        "version_type",
        "performance_metrics",
        "training_data",
        "change_log",
        "tags",
        "dependencies",
        "size_bytes",
        "hash",
    ):
        assert key in d


def test_compare_per_tensor(repo: Repository, tmp_path: Path):
    base = series.tensors(n=6)
    tuned = series.finetune(base)
    tuned["extra.bias"] = b"\x00" * 64
    repo.commit(
        "m", [series.save(tmp_path / "a" / "w.safetensors", base)], metrics={"accuracy": 0.5}
    )
    repo.commit(
        "m", [series.save(tmp_path / "b" / "w.safetensors", tuned)], metrics={"accuracy": 0.75}
    )
    c = repo.compare("m", "1.0.0", "1.0.1")
    assert c.metrics["accuracy"]["delta"] == pytest.approx(0.25)
    (f,) = c.files
    assert f.status == "changed"
    assert f.tensors.changed == ["layers.4.weight", "layers.5.weight"]
    assert f.tensors.added == ["extra.bias"]
    assert f.tensors.unchanged == 4
    assert 2 * (64 << 10) <= c.bytes_new <= 2 * (64 << 10) + 4096


def test_corrupt_chunk_named_in_error(repo: Repository, tmp_path: Path):
    f = series.save(tmp_path / "m.safetensors", series.tensors(n=3))
    v = repo.commit("m", [f]).version
    digest = v.manifest.files[0].object_digests()[-1]
    raw = repo.store.get(chunk_key(digest))
    repo.store.put(chunk_key(digest), raw[:-1] + bytes([raw[-1] ^ 1]))
    with pytest.raises(CorruptObjectError) as e:
        repo.checkout("m", "1.0.0", tmp_path / "out")
    msg = str(e.value)
    assert v.name in msg and "m.safetensors" in msg and digest.short() in msg
    assert not (tmp_path / "out" / "m.safetensors").exists()
    repo.store.delete(chunk_key(digest))
    with pytest.raises(NotFoundError, match=digest.short()):
        repo.open_file("m", "1.0.0").read()


@pytest.mark.every_backend
def test_open_file_ranges(repo: Repository, tmp_path: Path):
    f = series.save(tmp_path / "m.safetensors", series.tensors(n=4, size=1 << 20))
    data = f.read_bytes()
    repo.commit("m", [f])
    vf = repo.open_file("m", "@current")
    for start, end in (
        (0, 10),
        (100, 5 << 20),
        (len(data) - 7, len(data) + 10),
        (1 << 20, 3 << 20),
    ):
        assert vf.read_range(start, end) == data[start:end]
    vf.seek(12345)
    assert vf.read(1000) == data[12345:13345]


def test_bad_input_leaves_store_unchanged(repo: Repository, tmp_path: Path):
    f = series.save(tmp_path / "m.safetensors", series.tensors(n=2))
    repo.commit("m", [f])
    before = sorted(i.key for i in repo.store.list(""))
    lying = tmp_path / "lying.safetensors"
    raw = bytearray(f.read_bytes())
    raw[0:8] = (10**9).to_bytes(8, "little")
    lying.write_bytes(bytes(raw))
    truncated = tmp_path / "trunc.safetensors"
    truncated.write_bytes(f.read_bytes()[:-100])
    for bad_model, paths in [
        ("a/b", [f]),
        ("..", [f]),
        ("", [f]),
        ("x\x01", [f]),
        ("m", [tmp_path / "missing"]),
        ("m", [lying]),
        ("m", [truncated]),
        ("m", []),
    ]:
        with pytest.raises(InvalidInputError):
            repo.commit(bad_model, paths)
    with pytest.raises(InvalidInputError):
        repo.commit("m", [f], version="1.2")
    with pytest.raises(NotFoundError):
        repo.get_version("nope", "1.0.0")
    with pytest.raises(NotFoundError):
        repo.get_version("m", "9.9.9")
    after = sorted(i.key for i in repo.store.list(""))
    assert after == before


def test_future_store_format_refused(repo: Repository):
    from casstore.errors import StoreFormatError
    from casstore.repo.config import STORE_FORMAT_VERSION

    repo.init()
    repo.store.put(
        "config", b'{"format": "casstore", "format_version": %d}' % (STORE_FORMAT_VERSION + 1)
    )
    with pytest.raises(StoreFormatError, match="Upgrade"):
        Repository(repo.store)
