import datetime as dt

import msgpack
import pytest

from casstore.digest import Digest
from casstore.errors import CorruptObjectError, InvalidInputError, StoreFormatError
from casstore.repo.manifest import FileEntry, Lineage, Manifest, TensorEntry, decode, encode

WHEN = dt.datetime(2025, 9, 18, 14, 30, 22, tzinfo=dt.timezone.utc)


def sample() -> Manifest:
    return Manifest.parse(dict(
        model="concept_models",
        version="1.0.0",
        name="concept_models_v1.0.0_20250918_143022",
        created_at=WHEN,
        created_by="alice@host",
        version_type="release",
        performance_metrics={"accuracy": 0.95, "loss": 0.05},
        training_data={
            "data_count": 1000,
            "data_types": ["text", "json"],
            "data_quality_score": 85,
        },
        change_log="initial release",
        tags=("stable",),
        dependencies=("tokenizer>=1",),
        files=(
            FileEntry(
                path="model.safetensors",
                size=10,
                format="safetensors",
                chunker="tensor/x",
                chunks=((b"\x01" * 32, 10),),
                tensors=(TensorEntry(name="w", dtype="F32", shape=(2,), offset=2, length=8),),
            ),
        ),
    ))


def test_roundtrip():
    m = sample()
    raw = encode(m)
    assert decode(raw, Digest.of(raw)) == m


def test_golden_bytes():
    """A change here is a format change: bump FORMAT_VERSION deliberately."""
    raw = encode(sample())
    assert Digest.of(raw).hex() == GOLDEN, Digest.of(raw).hex()


GOLDEN = "3a4e9aaecd64af2b4e59e13ee0d976b176d676221c9c5ae1c2e44481d8eae806"


def test_params_and_lineage_are_format_3_and_pinned():
    """Params/lineage bump a manifest to format 3 (older casstore says "upgrade"); without
    them the bytes stay format 1's, pinned by GOLDEN above."""
    m = sample().replace(
        params={"optimizer": "adamw", "lr": "3e-4"},
        lineage=Lineage(run_id="run-17", dataset="wiki", dataset_version="2024-06"),
    )
    raw = encode(m)
    assert msgpack.unpackb(raw)["format_version"] == 3
    assert decode(raw) == m.replace(format_version=3)
    assert Digest.of(raw).hex() == GOLDEN_3, Digest.of(raw).hex()
    only_run = sample().replace(lineage=Lineage(run_id="r"))
    assert msgpack.unpackb(encode(only_run))["lineage"] == {"run_id": "r"}
    assert "params" not in msgpack.unpackb(encode(sample()))  # old manifests decode: defaults
    assert decode(encode(sample())).params == {} and decode(encode(sample())).lineage.is_empty()


GOLDEN_3 = "336539eef0bad589d5645655cd2aa835a51b57057ed99b25c6e3a94d62a15e6f"


def test_digest_mismatch_is_corrupt():
    raw = encode(sample())
    with pytest.raises(CorruptObjectError):
        decode(raw[:-1] + b"\x00", Digest.of(raw))


def test_garbage_is_corrupt():
    with pytest.raises(CorruptObjectError):
        decode(b"\xc1\xc1\xc1")
    with pytest.raises(CorruptObjectError):
        decode(msgpack.packb([1, 2]))


def test_future_format_refused():
    d = sample().to_python()
    d["format_version"] = 99
    raw = msgpack.packb(d, default=lambda o: o.isoformat(), use_bin_type=True)
    with pytest.raises(StoreFormatError):
        decode(raw)


def test_unknown_fields_refused():
    d = sample().to_python()
    d["surprise"] = 1
    raw = msgpack.packb(d, default=lambda o: o.isoformat(), use_bin_type=True)
    with pytest.raises(CorruptObjectError):
        decode(raw)


@pytest.mark.parametrize("path", ["../x", "/abs", "a/../b", "a//b", "", "a\\b", "./a"])
def test_path_tricks_refused(path):
    with pytest.raises((InvalidInputError, ValueError)):
        FileEntry(path=path, size=0, chunker="c", chunks=())
