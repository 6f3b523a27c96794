"""The restricted unpickler: code-executing pickles are refused and never run."""

from __future__ import annotations

import copyreg
import os
import pickle
import pickletools
import subprocess
import zipfile
from collections import OrderedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casstore.chunking import check_pickle_safe, detect_layout, get_chunker
from casstore.chunking.torch_pickle import StorageStub, TensorStub, named_tensors
from casstore.errors import InvalidInputError, UnsafePickleError

from .helpers import FileReader


class _Reduce:
    """Pickles as ``func(*args)``: the classic payload."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _evil(marker) -> _Reduce:
    return _Reduce(os.system, f"touch {marker}")


def _split(path):
    reader = FileReader(path)
    try:
        return get_chunker("tensor/max=16777216;fastcdc/avg=65536,min=16384,max=262144").split(
            reader, reader.size, path.name
        )
    finally:
        reader.close()


def test_payload_is_real(tmp_path):
    """Control: unpickled normally, the payload does run (so the tests below mean something)."""
    control = tmp_path / "CONTROL"
    pickle.loads(pickle.dumps(_evil(control)))
    assert control.exists()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_malicious_pickle_named_pt_is_refused(tmp_path, protocol):
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"w": _evil(marker)}, protocol=protocol))
    with pytest.raises(UnsafePickleError, match=r"posix\.system|os\.system") as info:
        _split(path)
    assert "evil.pt" in str(info.value)
    with pytest.raises(UnsafePickleError):
        check_pickle_safe(path.read_bytes())
    assert not marker.exists()


def test_malicious_data_pkl_inside_torch_zip_is_refused(torch, tmp_path):
    marker = tmp_path / "MARKER"
    torch.save({"w": torch.ones(4)}, tmp_path / "good.pt")
    src = zipfile.ZipFile(tmp_path / "good.pt")
    with zipfile.ZipFile(tmp_path / "evil.pt", "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/data.pkl"):
                data = pickle.dumps(OrderedDict(w=_evil(marker)), protocol=2)
            dst.writestr(info, data)
    with pytest.raises(UnsafePickleError, match="system"):
        _split(tmp_path / "evil.pt")
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        _Reduce(eval, "1+1"),
        _Reduce(exec, "pass"),
        _Reduce(getattr, _Reduce(__import__, "os"), "system"),
        _Reduce(subprocess.call, ["true"]),
        _Reduce(__import__, "os"),
        _Reduce(open, "/etc/passwd"),
        _Reduce(copyreg._reconstructor, object, object, None),
    ],
)
def test_other_dangerous_globals(payload):
    with pytest.raises(UnsafePickleError, match="disallowed global"):
        check_pickle_safe(pickle.dumps(payload, protocol=2))


def _ops(*parts: bytes) -> bytes:
    return b"\x80\x02" + b"".join(parts) + b"."


@pytest.mark.parametrize(
    "stream,match",
    [
        (_ops(b"cos\nsystem\n", b"X\x04\x00\x00\x00true\x85R"), "os.system"),
        (_ops(b"cbuiltins\neval\n", b")R"), "builtins.eval"),
        (_ops(b"c__builtin__\neval\n", b")R"), "builtins.eval"),
        (_ops(b"\x82\x01"), "EXT1"),  # extension registry: bypasses find_class in C pickle
        (_ops(b"(X\x01\x00\x00\x00ai__main__\nFoo\n"), "INST"),
        (_ops(b"(ctorch\nFloatStorage\no"), "OBJ"),
        (_ops(b"ctorch\nFloatStorage\n}b"), "BUILD"),  # would set attributes on the stub
        (_ops(b"ctorch\nFloatStorage\n)R"), "not allowed"),  # not callable
        (_ops(b"X\x06\x00\x00\x00module\x85Q"), "persistent id"),
        (_ops(b"\x8c\x02os\x8c\x06system\x93"), "os.system"),  # STACK_GLOBAL
        (_ops(b"}(X\x01\x00\x00\x00a\x93u"), "."),  # malformed STACK_GLOBAL
    ],
)
def test_hand_written_streams(stream, match):
    with pytest.raises(InvalidInputError, match=match):
        check_pickle_safe(stream)


def test_registered_extension_is_still_refused():
    module = os.system.__module__  # posix
    copyreg.add_extension(module, "system", 240)
    try:
        data = pickle.dumps(os.system, protocol=2)
        assert b"\x82" in data  # EXT1
        with pytest.raises(UnsafePickleError, match="EXT1"):
            check_pickle_safe(data)
    finally:
        copyreg.remove_extension(module, "system", 240)


def test_allocation_bomb_is_refused():
    stream = _ops(b"cbuiltins\nbytearray\n", b"J\x00\x00\x00\x7f\x85R")  # bytearray(2**31)
    with pytest.raises(InvalidInputError):
        check_pickle_safe(stream)


def test_safe_values_pass():
    value = {"a": [1, 2.5, "x", b"y", None, True, (1, 2)], "b": OrderedDict(c={1, 2}), "d": 2**80}
    for protocol in (2, 3, 4, 5):
        check_pickle_safe(pickle.dumps(value, protocol=protocol))
    check_pickle_safe(pickle.dumps(bytearray(b"abc"), protocol=2))
    check_pickle_safe(pickle.dumps(frozenset({1}), protocol=4))


def test_real_torch_pickles_pass(torch, tmp_path):
    sd = {"w": torch.nn.Parameter(torch.randn(3)), "n": {"k": torch.ones(2, dtype=torch.bfloat16)}}
    torch.save(sd, tmp_path / "a.pt")
    data_pkl = next(
        n for n in zipfile.ZipFile(tmp_path / "a.pt").namelist() if n.endswith("data.pkl")
    )
    check_pickle_safe(zipfile.ZipFile(tmp_path / "a.pt").read(data_pkl))
    torch.save(sd, tmp_path / "b.pt", _use_new_zipfile_serialization=False)
    check_pickle_safe((tmp_path / "b.pt").read_bytes())


def test_legacy_file_with_malicious_object_is_refused(torch, tmp_path):
    marker = tmp_path / "MARKER"
    torch.save({"w": torch.ones(2)}, tmp_path / "ok.pt", _use_new_zipfile_serialization=False)
    raw = (tmp_path / "ok.pt").read_bytes()
    # Keep the legacy preamble (magic, protocol, sys info), replace the object pickle.
    pos = 0
    for _ in range(3):
        pos = next(p for op, _, p in pickletools.genops(raw[pos:]) if op.name == "STOP") + pos + 1
    (tmp_path / "evil.pth").write_bytes(raw[:pos] + pickle.dumps(_evil(marker), protocol=2))
    with pytest.raises(UnsafePickleError, match="system"):
        _split(tmp_path / "evil.pth")
    assert not marker.exists()


def test_pickle_with_non_torch_name_is_not_parsed(tmp_path):
    """Only torch names are treated as torch-pickle; other pickles are opaque bytes."""
    (tmp_path / "data.pkl").write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    reader = FileReader(tmp_path / "data.pkl")
    assert detect_layout(reader, reader.size, "data.pkl").format == "raw"
    reader.close()


def test_cyclic_and_shared_containers_walk_once():
    shared: list = []
    shared.append(shared)
    big = [shared] * 1000
    obj = {"a": big, "b": big}
    assert list(named_tensors(obj)) == []


def test_deep_nesting():
    obj: list = []
    cur = obj
    for _ in range(100_000):
        cur.append([])
        cur = cur[0]
    assert list(named_tensors(obj)) == []
    check_pickle_safe(b"\x80\x02" + b"]" * 50_000 + b"a" * 49_999 + b".")


def test_truncated_and_empty_streams():
    for stream in (
        b"",
        b"\x80",
        b"\x80\x02",
        b"\x80\x02X\xff\xff\xff\x00ab",
        b"\x80\x02T\xfb\xff\xff\xff.",  # negative length: must not loop backwards
        b"\x80\x02\x8b\xfb\xff\xff\xff.",
    ):
        with pytest.raises(InvalidInputError):
            check_pickle_safe(stream)


def test_tensor_stub_contiguity():
    storage = StorageStub("0", "float32", 100)
    assert TensorStub(storage, 0, (10, 10), (10, 1), "float32").is_contiguous()
    assert TensorStub(storage, 5, (1, 10), (99, 1), "float32").is_contiguous()
    assert TensorStub(storage, 0, (), (), "float32").is_contiguous()
    assert not TensorStub(storage, 0, (10, 10), (1, 10), "float32").is_contiguous()
    assert not TensorStub(storage, 0, (50,), (2,), "float32").is_contiguous()
    with pytest.raises(InvalidInputError):
        TensorStub(storage, -1, (10,), (1,), "float32")


_VALID = [
    pickle.dumps({"a": [1, 2.5, "x", (None, True)], "b": {"c": b"d"}}, protocol=p)
    for p in (2, 4, 5)
]


@settings(max_examples=300, deadline=None)
@given(
    base=st.sampled_from(_VALID),
    edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 300),
)
def test_fuzzed_pickles_only_raise_invalid_input(base, edits, cut):
    data = bytearray(base)
    for pos, value in edits:
        if data:
            data[pos % len(data)] = value
    try:
        check_pickle_safe(bytes(data[: max(cut, 1)]))
    except InvalidInputError:
        pass
