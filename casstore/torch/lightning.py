"""A Lightning callback around :class:`CheckpointCallback`, for where Lightning is installed.

Lightning is never a dependency: :func:`lightning_callback` imports ``lightning.pytorch`` (or
the older ``pytorch_lightning``) when called and raises UnsupportedError if neither exists.
"""

from __future__ import annotations

import importlib
from typing import Any

from casstore.errors import UnsupportedError
from casstore.torch._common import StoreLike
from casstore.torch.callbacks import CheckpointCallback


def _callback_base() -> type:
    for name in ("lightning.pytorch", "pytorch_lightning"):
        try:
            return importlib.import_module(name).Callback
        except ImportError:
            continue
    raise UnsupportedError("lightning_callback needs lightning: pip install lightning")


def lightning_callback(store: StoreLike, model: str, **options: Any) -> Any:
    """A ``lightning.pytorch.Callback`` committing ``pl_module`` through a
    :class:`CheckpointCallback` (same options) with ``trainer.callback_metrics`` as metrics:
    after training batches when ``every_n_steps`` is set, after each training epoch when
    ``every_n_epochs`` is. Only the global-zero rank commits."""
    base = _callback_base()
    inner = CheckpointCallback(store, model, **options)

    class CasstoreCheckpoint(base):  # type: ignore[misc, valid-type]
        checkpoints = inner

        def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
            if inner.every_n_steps is not None and trainer.is_global_zero:
                inner.step(pl_module, step=trainer.global_step, metrics=_metrics(trainer))

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            if inner.every_n_epochs is not None and trainer.is_global_zero:
                inner.step(pl_module, epoch=trainer.current_epoch, metrics=_metrics(trainer))

        def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
            inner.close()

    return CasstoreCheckpoint()


def _metrics(trainer: Any) -> dict[str, float]:
    out = {}
    for k, v in dict(trainer.callback_metrics).items():
        try:
            out[str(k)] = float(v)
        except (TypeError, ValueError):
            continue  # not a scalar
    return out
