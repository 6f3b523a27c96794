"""Loading one tensor of a 1 GiB model reads that tensor's bytes and little else."""

from __future__ import annotations

import shutil

import pytest

torch = pytest.importorskip("torch")

import casstore.torch as ct  # noqa: E402
from casstore.store import LocalStore  # noqa: E402
from casstore.testing.stores import CountingStore  # noqa: E402

N_LAYERS = 16
NUMEL = 16 << 20  # float32: 64 MiB per tensor, 1 GiB in all
SLACK = 64 << 10  # manifest, refs, config, index entries, chunk headers


def layer(i: int) -> torch.Tensor:
    t = torch.empty(NUMEL, dtype=torch.float32)
    t.view(torch.int32).copy_(torch.arange(i * NUMEL, (i + 1) * NUMEL, dtype=torch.int32))
    return t


def test_lazy_load_of_one_tensor_reads_only_its_bytes(tmp_path):
    root = tmp_path / "store"
    store = CountingStore(LocalStore(root))
    try:
        sd = {f"layers.{i}.weight": layer(i) for i in range(N_LAYERS)}
        sd["norm.bias"] = torch.arange(8, dtype=torch.float32)
        res = ct.save(sd, store, "big")
        assert res.logical_bytes > 1 << 30
        del sd

        store.reset()
        out = ct.load(store, "big", keys=["layers.7.weight"])
        assert store.bytes_read <= NUMEL * 4 + SLACK, store.counts()
        assert torch.equal(
            out["layers.7.weight"].view(torch.int32)[-3:], layer(7).view(torch.int32)[-3:]
        )

        store.reset()
        small = ct.load(store, "big", keys=["norm.bias"])
        assert small["norm.bias"].tolist() == list(range(8))
        assert store.bytes_read <= SLACK, store.counts()
    finally:
        store.close()
        shutil.rmtree(root, ignore_errors=True)
