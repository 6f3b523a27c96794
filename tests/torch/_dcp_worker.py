"""Run inside each rank spawned by test_dcp: save a sharded state dict, load it resharded."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Replicate, Shard, distribute_tensor

from casstore.torch import CasstoreStorageReader, CasstoreStorageWriter


def full_state() -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "w": torch.randn(16, 8, generator=g),
        "emb": torch.randn(6, 10, generator=g).to(torch.bfloat16),
        "bias": torch.arange(5, dtype=torch.int64),
        "step": 7,
        "opt": {"lr": 0.1, "betas": (0.9, 0.99)},
    }


def run(rank: int, world: int, init: str, store: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        mesh = init_device_mesh("cpu", (world,))
        full = full_state()
        sd = {
            "w": distribute_tensor(full["w"], mesh, [Shard(0)]),
            "emb": distribute_tensor(full["emb"], mesh, [Shard(1)]),
            "bias": full["bias"].clone(),
            "step": full["step"],
            "opt": dict(full["opt"]),
        }
        writer = CasstoreStorageWriter(store, "dcp", metrics={"loss": 1.5})
        md = dcp.save(sd, storage_writer=writer)
        assert md.storage_meta.checkpoint_id.startswith("dcp_v1.0.0_"), md.storage_meta
        assert (writer.result is not None) == (rank == 0)

        target = {  # another layout: DCP reshards while reading
            "w": distribute_tensor(torch.zeros(16, 8), mesh, [Shard(1)]),
            "emb": distribute_tensor(torch.zeros(6, 10, dtype=torch.bfloat16), mesh, [Replicate()]),
            "bias": torch.zeros(5, dtype=torch.int64),
            "step": 0,
            "opt": {"lr": 0.0, "betas": (0.0, 0.0)},
        }
        dcp.load(target, storage_reader=CasstoreStorageReader(store, "dcp", "current"))
        assert torch.equal(target["w"].full_tensor(), full["w"])
        assert torch.equal(target["emb"].full_tensor(), full["emb"])
        assert torch.equal(target["bias"], full["bias"])
        assert target["step"] == 7 and target["opt"] == full["opt"], target
        # both ranks done with every collective before either tears its connections down (a
        # rank destroying the group while its peer still closes gloo pairs aborted once in CI:
        # "terminate called without an active exception")
        dist.barrier()
    finally:
        dist.destroy_process_group()
