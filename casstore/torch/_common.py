"""Shared helpers of :mod:`casstore.torch`: opening a store argument, naming a version, and
mapping dtypes between torch and safetensors (the names :mod:`casstore.chunking` reports)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Union

import torch

from casstore.chunking.dtypes import SAFETENSORS_BITS, TORCH_DTYPES
from casstore.errors import InvalidInputError, UnsupportedError
from casstore.repo.catalog import Version
from casstore.repository import Repository
from casstore.store import ObjectStore

StoreLike = Union[str, "os.PathLike[str]", ObjectStore, Repository]
"""Where versions live: a URL or path, an opened :class:`ObjectStore`, or a Repository."""


@contextmanager
def open_repo(store: StoreLike) -> Iterator[Repository]:
    """A Repository over ``store``; a store opened here from a URL is closed afterwards."""
    if isinstance(store, Repository):
        yield store
        return
    repo = Repository(store)
    try:
        yield repo
    finally:
        if not isinstance(store, ObjectStore):
            repo.store.close()


def resolve_version(repo: Repository, model: str, spec: str) -> Version:
    """A version by anything :meth:`Repository.get_version` takes (a bare ref name such as
    ``"current"`` or ``"best"`` included)."""
    return repo.get_version(model, spec)


def _torch_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _build_maps() -> tuple[dict[torch.dtype, str], dict[str, torch.dtype]]:
    to_st: dict[torch.dtype, str] = {}
    from_st: dict[str, torch.dtype] = {}
    for torch_name, (st_name, _) in TORCH_DTYPES.items():
        dtype = getattr(torch, torch_name, None)
        if isinstance(dtype, torch.dtype) and st_name in SAFETENSORS_BITS:
            to_st[dtype] = st_name
            from_st[st_name] = dtype
    return to_st, from_st


_TO_ST, _FROM_ST = _build_maps()


def st_dtype(dtype: torch.dtype, what: str = "tensor") -> str:
    """The safetensors name of a torch dtype (InvalidInputError if it has none)."""
    name = _TO_ST.get(dtype)
    if name is None:
        raise InvalidInputError(
            f"{what}: dtype {_torch_name(dtype)} has no safetensors encoding "
            f"(supported: {', '.join(sorted(_TORCH_NAMES))})"
        )
    return name


_TORCH_NAMES = {_torch_name(d) for d in _TO_ST}


def torch_dtype(st_name: str, what: str = "tensor") -> torch.dtype:
    """The torch dtype of a safetensors dtype name (UnsupportedError if this torch lacks it)."""
    dtype = _FROM_ST.get(st_name)
    if dtype is None:
        raise UnsupportedError(
            f"{what}: dtype {st_name} is not supported by torch {torch.__version__}"
        )
    return dtype


def dtype_by_torch_name(name: str, what: str = "tensor") -> tuple[torch.dtype, int]:
    """(dtype, bytes per element) for a torch dtype name found in a pickle (``"float32"``)."""
    info = TORCH_DTYPES.get(name)
    dtype = getattr(torch, name, None) if info else None
    if info is None or not isinstance(dtype, torch.dtype):
        raise UnsupportedError(f"{what}: dtype {name} is not supported")
    return dtype, info[1]


def itemsize(st_name: str) -> int:
    return max(1, SAFETENSORS_BITS[st_name] // 8)


def tensor_bytes(t: torch.Tensor) -> memoryview:
    """The bytes of ``t`` in row-major order, as a flat memoryview. No copy for a contiguous
    CPU tensor; a GPU or non-contiguous tensor is copied (to the CPU, contiguous) once."""
    x = t.detach()
    if x.device.type != "cpu":
        x = x.to("cpu")
    x = x.resolve_conj().resolve_neg()
    if not x.is_contiguous():
        x = x.contiguous()
    return memoryview(x.reshape(-1).view(torch.uint8).numpy()).cast("B")


def empty_bytes(n: int) -> tuple[torch.Tensor, memoryview]:
    """A fresh uint8 CPU tensor of ``n`` bytes and a writable memoryview over it."""
    buf = torch.empty(n, dtype=torch.uint8)
    return buf, memoryview(buf.numpy()).cast("B")
