"""Stores written before chunk encodings existed (``tests/fixtures/store_v1``) read and write.

The fixture was made by ``tests/fixtures/make_v1_store.py`` with the code of that time and is
never regenerated; each test works on a copy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import blake3
import pytest

from casstore import Repository
from casstore.ops.verify import verify

FIXTURES = Path(__file__).parent.parent / "fixtures"
EXPECTED = json.loads((FIXTURES / "store_v1_expected.json").read_text())


@pytest.fixture
def old_store(tmp_path: Path) -> Path:
    dst = tmp_path / "store_v1"
    shutil.copytree(FIXTURES / "store_v1", dst)
    return dst


def _chunk_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in (root / "chunks").rglob("*")
            if p.is_file()}


def test_old_store_checks_out_byte_identical(old_store: Path, tmp_path: Path) -> None:
    repo = Repository(str(old_store))
    assert [v.version for v in repo.versions("fixture")] == ["1.0.0", "1.0.1"]
    assert repo.get_version("fixture", "@production").version == "1.0.1"
    assert "stable" in repo.get_version("fixture", "1.0.0").tags
    for semver, folder in (("1.0.0", "v1"), ("1.0.1", "v2")):
        out = tmp_path / folder
        repo.checkout("fixture", semver, out)
        for p in sorted(out.iterdir()):
            assert blake3.blake3(p.read_bytes()).hexdigest() == EXPECTED[f"{folder}/{p.name}"]
    assert verify(repo.ctx, read_data=True).ok


def test_old_store_accepts_new_versions_and_keeps_old_objects(old_store: Path,
                                                               tmp_path: Path) -> None:
    before = _chunk_files(old_store)
    repo = Repository(str(old_store))
    out = tmp_path / "co"
    repo.checkout("fixture", "1.0.1", out)
    (out / "notes.bin").write_bytes(b"changed" * 5000)
    res = repo.commit("fixture", [out])
    assert res.version.version == "1.0.2"
    after = _chunk_files(old_store)
    assert {k: after[k] for k in before} == before  # old objects untouched
    back = tmp_path / "back"
    Repository(str(old_store)).checkout("fixture", "1.0.2", back)
    assert (back / "notes.bin").read_bytes() == b"changed" * 5000
    assert verify(repo.ctx, read_data=True).ok


def test_old_config_reads_as_encoding_off_and_new_stores_encode(old_store: Path,
                                                                 tmp_path: Path) -> None:
    from casstore.repo.config import load_config, replace_config

    repo = Repository(str(old_store))
    assert repo.config.encoding == "off" and repo.config.format_version == 1
    before = (old_store / "config").read_bytes()
    replace_config(repo.store, repo.config)  # rewriting an "off" config keeps format 1 bytes
    assert json.loads((old_store / "config").read_bytes()) == json.loads(before)
    fresh = Repository(str(tmp_path / "new"))
    cfg = fresh.init()
    assert cfg.encoding == "fast" and cfg.format_version == 2
    assert json.loads((tmp_path / "new" / "config").read_text())["encoding"] == "fast"
    replace_config(repo.store, repo.config.replace(encoding="max"))
    assert load_config(repo.store).format_version == 2


def test_old_store_gets_its_catalog_on_first_write(old_store: Path, tmp_path: Path) -> None:
    """Issue 12: a store from before catalogs reads as it is (nothing written), and its first
    write builds every model's catalog and the stats base, without a manual step."""
    repo = Repository(str(old_store))
    assert repo.models() == ["fixture"]
    assert [v.version for v in repo.log("fixture")] == ["1.0.1", "1.0.0"]
    assert not (old_store / "catalog").exists()  # readers rebuild in memory only
    before = repo.stats(exact=True)
    repo.tag("fixture", "1.0.1", "reviewed")
    assert (old_store / "catalog" / "heads" / "fixture").is_file()
    fresh = Repository(str(old_store))
    assert fresh.catalog.models_catalog.check("fixture") == []
    counted = fresh.stats()
    assert not counted.exact
    for k in ("versions", "logical_bytes", "stored_bytes", "chunks"):
        assert getattr(counted, k) == getattr(before, k), k
    assert "reviewed" in fresh.get_version("fixture", "1.0.1").tags
    assert verify(fresh.ctx).ok
