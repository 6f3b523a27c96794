"""Corrupted real files: parsing either succeeds or raises InvalidInputError, nothing else."""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casstore.chunking import make_chunker
from casstore.errors import InvalidInputError

from .helpers import cut_offsets


def _torch_file(kind: str) -> bytes:
    torch = pytest.importorskip("torch")
    sd = {"a": torch.arange(64, dtype=torch.float32), "n": {"b": torch.ones(3, dtype=torch.int8)}}
    buf = io.BytesIO()
    if kind == "safetensors":
        from safetensors.torch import save

        return save({"a": sd["a"], "b": sd["n"]["b"]}, metadata={"m": "x"})
    torch.save(sd, buf, _use_new_zipfile_serialization=kind == "zip")
    return buf.getvalue()


@pytest.mark.parametrize(
    "kind,name", [("zip", "m.pt"), ("legacy", "m.pt"), ("safetensors", "m.safetensors")]
)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_files(kind, name, data):
    raw = bytearray(_torch_file(kind))
    for _ in range(data.draw(st.integers(1, 4))):
        where = data.draw(st.integers(0, len(raw) - 1))
        raw[where] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    blob = bytes(raw)
    chunker = make_chunker("tensor", max_chunk=4096)
    try:
        layout, pieces = chunker.split(lambda o, n: blob[o : o + n], len(blob), name)
    except InvalidInputError:
        return
    out = [bytes(p) for p in pieces]
    assert b"".join(out) == blob
    cuts = set(cut_offsets(out))
    for t in layout.tensors:
        assert t.offset >= 0 and t.offset + t.length <= len(blob)
        assert t.offset in cuts or t.length == 0
