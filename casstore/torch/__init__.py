"""PyTorch integration: save and load state dicts straight through a casstore store.

The only part of casstore that imports torch (``import casstore`` never does)::

    import casstore.torch as ct
    ct.save(model, "s3://bucket/models", "bert", metrics={"acc": 0.91})
    sd = ct.load("s3://bucket/models", "bert", "current", keys=["pooler.dense.weight"])
    ct.load_into(model, repo, "bert", "1.2.0", strict=False)

Full training state (model, optimizer, scheduler, step, RNGs, your own tree):
:func:`save_checkpoint`, :func:`load_checkpoint`, :func:`resume`.
Also: :class:`CheckpointCallback` for training loops (and a Lightning callback where
Lightning is installed), and :class:`CasstoreStorageWriter` / :class:`CasstoreStorageReader`
for ``torch.distributed.checkpoint``.
"""

from __future__ import annotations

from typing import Any

from casstore.torch._common import StoreLike
from casstore.torch.checkpoint import Checkpoint, load_checkpoint, resume, save_checkpoint
from casstore.torch.serialization import LoadResult, load, load_into, save, stored_names

_LAZY = {
    "CheckpointCallback": "casstore.torch.callbacks",
    "CheckpointEvent": "casstore.torch.callbacks",
    "lightning_callback": "casstore.torch.lightning",
    "CasstoreStorageReader": "casstore.torch.dcp",
    "CasstoreStorageWriter": "casstore.torch.dcp",
}


def __getattr__(name: str) -> Any:  # torch.distributed is imported only when used
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'casstore.torch' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "CasstoreStorageReader",
    "CasstoreStorageWriter",
    "Checkpoint",
    "CheckpointCallback",
    "CheckpointEvent",
    "LoadResult",
    "StoreLike",
    "lightning_callback",
    "load",
    "load_checkpoint",
    "load_into",
    "resume",
    "save",
    "save_checkpoint",
    "stored_names",
]
