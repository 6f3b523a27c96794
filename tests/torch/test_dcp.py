"""torch.distributed.checkpoint through casstore: 2 gloo ranks save, one version, reshard."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

import torch.distributed.checkpoint as dcp  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

import casstore.torch as ct  # noqa: E402
from casstore import NotFoundError, Repository  # noqa: E402
from casstore.torch.dcp import DCP_METADATA, CasstoreStorageReader  # noqa: E402

from . import _dcp_worker  # noqa: E402


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")
def test_two_rank_save_makes_one_version_and_loads_resharded(tmp_path):
    store = str(tmp_path / "store")
    init = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_dcp_worker.run, args=(2, init, store), nprocs=2, join=True)

    repo = Repository(store)
    (version,) = repo.versions("dcp")
    assert sorted(f.path for f in version.manifest.files) == [
        DCP_METADATA,
        "rank-00000.safetensors",
        "rank-00001.safetensors",
    ]
    assert version.metrics == {"loss": 1.5}
    assert list(repo.store.list("tmp/dcp/")) == []  # staged entries cleaned up

    # One process, no process group: DCP reassembles the whole tensors from both ranks.
    full = _dcp_worker.full_state()
    target = {
        "w": torch.zeros(16, 8),
        "emb": torch.zeros(6, 10, dtype=torch.bfloat16),
        "bias": torch.zeros(5, dtype=torch.int64),
        "step": 0,
        "opt": {"lr": 0.0, "betas": (0.0, 0.0)},
    }
    dcp.load(target, storage_reader=CasstoreStorageReader(store, "dcp"), no_dist=True)
    for key in ("w", "emb", "bias"):
        assert torch.equal(target[key], full[key]), key
    assert target["step"] == 7 and target["opt"] == full["opt"]

    # casstore.torch.load assembles whole tensors too (objects stay with dcp.load).
    whole = ct.load(store, "dcp")
    assert sorted(whole) == ["bias", "emb", "w"]
    for key, t in whole.items():
        assert torch.equal(t, full[key]) and t.dtype == full[key].dtype, key
    assert list(ct.load(store, "dcp", keys=["emb"])) == ["emb"]
    with pytest.raises(NotFoundError, match=r"dcp\.load"):
        ct.load(store, "dcp", keys=["step"])
    assert len(ct.load(store, "dcp", path="rank-00001.safetensors")) > 0  # the raw pieces


def test_reader_refuses_a_version_that_is_not_a_distributed_checkpoint(repo):
    ct.save({"w": torch.zeros(2)}, repo, "plain")
    with pytest.raises(NotFoundError, match="not a distributed checkpoint"):
        CasstoreStorageReader(repo, "plain").read_metadata()
