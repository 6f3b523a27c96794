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
from casstore import ConflictError, NotFoundError, Repository  # noqa: E402
from casstore.torch.dcp import (  # noqa: E402
    DCP_METADATA,
    CasstoreStorageReader,
    CasstoreStorageWriter,
)

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


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")
def test_single_process_save_of_nested_state_and_versions(repo):
    state = {
        "model": {"w": torch.randn(4, 3), "b": torch.zeros(3, dtype=torch.float16)},
        "optim": {"step": 3, "lr": [0.1, 0.01]},
    }
    writer = CasstoreStorageWriter(repo, "solo", metrics={"loss": 2.0}, tags=["dcp"])
    md = dcp.save(state, storage_writer=writer, no_dist=True)
    assert md.storage_meta.checkpoint_id == writer.result.version.name
    state["model"]["w"] += 1
    dcp.save(state, storage_writer=CasstoreStorageWriter(repo, "solo"), no_dist=True)
    assert [v.version for v in repo.versions("solo")] == ["1.0.0", "1.0.1"]

    target = {
        "model": {"w": torch.zeros(4, 3), "b": torch.ones(3, dtype=torch.float16)},
        "optim": {"step": 0, "lr": [0.0, 0.0]},
    }
    dcp.load(target, storage_reader=CasstoreStorageReader(repo, "solo", "1.0.1"), no_dist=True)
    assert torch.equal(target["model"]["w"], state["model"]["w"])
    assert torch.equal(target["model"]["b"], state["model"]["b"])
    assert target["optim"] == {"step": 3, "lr": [0.1, 0.01]}
    assert ct.load(repo, "solo", "1.0.1")["model.w"].equal(state["model"]["w"])


def test_reader_refuses_ranks_that_resolved_different_versions(repo):
    from torch.distributed.checkpoint.planner import LoadPlan

    reader = CasstoreStorageReader(repo, "x")
    with pytest.raises(ConflictError):
        reader.prepare_global_plan([LoadPlan([], storage_data="a"), LoadPlan([], storage_data="b")])


@pytest.mark.s3
@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")
def test_dcp_round_trip_on_s3(s3_url):
    state = {"w": torch.randn(8, 4), "meta": {"epoch": 2}}
    dcp.save(state, storage_writer=CasstoreStorageWriter(s3_url, "s3dcp"), no_dist=True)
    target = {"w": torch.zeros(8, 4), "meta": {"epoch": 0}}
    dcp.load(target, storage_reader=CasstoreStorageReader(s3_url, "s3dcp"), no_dist=True)
    assert torch.equal(target["w"], state["w"]) and target["meta"] == {"epoch": 2}
    assert list(Repository(s3_url).store.list("tmp/dcp/")) == []


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")
def test_what_the_writer_accepts_the_reader_loads(repo):
    import numpy as np
    from torch.distributed.checkpoint.api import CheckpointException

    from casstore import UnsafePickleError

    state = {"w": torch.arange(4.0), "best": np.float64(0.25), "note": {"lr": 0.1}}
    with pytest.raises(CheckpointException) as refused:  # DCP wraps the rank's error
        dcp.save(state, storage_writer=CasstoreStorageWriter(repo, "np"), no_dist=True)
    text = str(refused.value)
    assert "UnsafePickleError" in text and "disallowed global numpy" in text
    assert not repo.catalog.version_index("np")  # nothing published
    allow = [f"{np.float64(0).__reduce__()[0].__module__}.scalar", "numpy.dtype"]
    dcp.save(state, storage_writer=CasstoreStorageWriter(repo, "np", allow_globals=allow),
             no_dist=True)
    target = {"w": torch.zeros(4), "best": None, "note": {"lr": 0.0}}
    with pytest.raises((UnsafePickleError, CheckpointException)) as refused:
        # the store's record is not trusted: DCP would unpickle the object for real
        dcp.load(target, storage_reader=CasstoreStorageReader(repo, "np"), no_dist=True)
    assert "written with allow_globals" in str(refused.value) and target["best"] is None
    reader = CasstoreStorageReader(repo, "np", allow_globals=allow)
    dcp.load(target, storage_reader=reader, no_dist=True)
    assert torch.equal(target["w"], state["w"]) and target["best"] == np.float64(0.25)
    assert target["note"] == {"lr": 0.1}
