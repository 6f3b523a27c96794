"""Bit-exact comparison of tensors and random state dicts of every dtype."""

from __future__ import annotations

import torch

DTYPES = [
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.float64,
    torch.int64,
    torch.int32,
    torch.int16,
    torch.int8,
    torch.uint8,
    torch.bool,
    torch.float8_e4m3fn,
    torch.float8_e5m2,
    torch.complex64,
    torch.uint16,
    torch.uint32,
    torch.uint64,
]
SHAPES = [(), (0,), (3, 0, 2), (7,), (5, 3), (2, 3, 4), (1, 1, 1, 1)]


def raw(t: torch.Tensor) -> bytes:
    """The tensor's elements as bytes, in row-major order."""
    return bytes(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())


def random_tensor(dtype: torch.dtype, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Random bit patterns (NaNs, infinities, subnormals included); bools are 0 or 1."""
    g = torch.Generator().manual_seed(seed)
    n = 1
    for d in shape:
        n *= d
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=g).bool()
    size = torch.empty((), dtype=dtype).element_size()
    bits = torch.randint(0, 256, (n * size,), dtype=torch.uint8, generator=g)
    return bits.view(dtype).reshape(shape)


def assert_same(a: torch.Tensor, b: torch.Tensor, name: str = "") -> None:
    assert a.dtype == b.dtype, (name, a.dtype, b.dtype)
    assert tuple(a.shape) == tuple(b.shape), (name, a.shape, b.shape)
    assert raw(a) == raw(b), name
