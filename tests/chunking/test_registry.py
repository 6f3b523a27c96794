"""Chunker names: canonical, parameterised, and round-tripping through the registry."""

from __future__ import annotations

import subprocess
import sys

import pytest

import casstore.chunking as chunking
from casstore.chunking import DEFAULT_CHUNKER, get_chunker, make_chunker
from casstore.errors import InvalidInputError


def test_public_api_is_pinned():
    assert sorted(chunking.__all__) == [
        "Chunker",
        "DEFAULT_CHUNKER",
        "FileLayout",
        "ReadAt",
        "TensorInfo",
        "check_pickle_safe",
        "detect_layout",
        "get_chunker",
        "make_chunker",
    ]


def test_default_name():
    assert DEFAULT_CHUNKER == "tensor/max=16777216;fastcdc/avg=65536,min=16384,max=262144"
    assert make_chunker().name == DEFAULT_CHUNKER


@pytest.mark.parametrize(
    "chunker",
    [
        make_chunker(),
        make_chunker("tensor", max_chunk=1 << 20, cdc_avg=1 << 20),
        make_chunker("fastcdc"),
        make_chunker("fastcdc", cdc_avg=4096, cdc_min=1024, cdc_max=65536),
        make_chunker("fixed", max_chunk=1 << 20),
    ],
)
def test_names_round_trip(chunker):
    again = get_chunker(chunker.name)
    assert again.name == chunker.name
    assert type(again) is type(chunker)


def test_names_carry_parameters():
    assert make_chunker("fastcdc", cdc_avg=1 << 20).name == (
        "fastcdc/avg=1048576,min=262144,max=4194304"
    )
    assert make_chunker("fixed", max_chunk=1 << 20).name == "fixed/size=1048576"


@pytest.mark.parametrize(
    "name",
    [
        "",
        "tensor",
        "rabin/avg=65536",
        "fastcdc/avg=65536",
        "fastcdc/min=16384,avg=65536,max=262144",
        "fastcdc/avg=065536,min=16384,max=262144",
        "fastcdc/avg=65536,min=16384,max=262144;",
        "fastcdc/avg=65536,min=16384,max=262144,x=1",
        "fixed/size=0",
        "fixed/size=1099511627776",
        "tensor/max=16777216",
        "tensor/max=16777216;fixed/size=65536",
        "fastcdc/avg=65536,min=16384,max=262144;tensor/max=16777216",
        "tensor/max=33554432;fastcdc/avg=65536,min=16384,max=262144",
        " tensor/max=16777216;fastcdc/avg=65536,min=16384,max=262144",
    ],
)
def test_bad_names_are_refused(name):
    with pytest.raises(InvalidInputError):
        get_chunker(name)


def test_non_string_name_refused():
    with pytest.raises(InvalidInputError):
        get_chunker(None)  # type: ignore[arg-type]


def test_unknown_kind_refused():
    with pytest.raises(InvalidInputError):
        make_chunker("rabin")


def test_importing_chunking_never_imports_torch():
    code = "import sys, casstore.chunking; assert 'torch' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
