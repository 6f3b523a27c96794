"""Issue 18, defect 5 (and the 150k-tensor safetensors minor item): hostile model files are
refused or parsed within bounded memory and CPU, each in a child process with hard limits
(``casstore.testing.hostile.bounded``: 256 MB more address space, 5 s of CPU)."""

from __future__ import annotations

import pytest

from casstore.chunking import detect_layout
from casstore.testing.hostile import (
    MEMORY_BOUND,
    TIME_BOUND,
    bounded,
    pickle_bombs,
    safetensors_many,
)

BOMBS = pickle_bombs()
REFUSED = {"list-copy-1MB.pt": "container elements", "marks-8MB.pt": "MARKs",
           "nested-dicts-200k.pt": "stack deeper", "deep-tensors.pt": "nested more than",
           "busy-8MB.pt": "operations"}


def _parse(name: str, data: bytes) -> None:
    view = memoryview(data)
    detect_layout(lambda o, n: bytes(view[o : o + n]), len(data), name)


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_defect5_pickle_bombs_in_pt_files_are_bounded(name):
    out = bounded(_parse, name, BOMBS[name])
    assert out.kind != "defect", f"{name}: {out.detail}"
    if name in REFUSED:
        assert out.kind == "refused" and REFUSED[name] in out.detail, out
    else:  # the legitimate control is accepted within the same bounds
        assert out.kind == "ok", out


def test_defect5_bounds_are_what_the_docs_state():
    assert MEMORY_BOUND == 256 << 20 and TIME_BOUND == 5.0


def test_minor_safetensors_with_150k_tiny_tensors_is_bounded():
    data = safetensors_many(150_000)
    out = bounded(_parse, "many.safetensors", data)
    assert out.kind == "ok", out


def _hog() -> None:
    _ = bytearray(MEMORY_BOUND + (64 << 20))


def _spin() -> None:
    while True:
        pass


def _crash() -> None:
    raise KeyError("boom")


def test_bounded_catches_what_it_claims():
    """The harness can fail: memory, CPU and crashes are each reported as defects."""
    assert bounded(_hog).kind == "defect"
    assert bounded(_spin, seconds=0.5).kind == "defect"
    out = bounded(_crash)
    assert out.kind == "defect" and "KeyError" in out.detail
