"""Checkpointing from a training loop: commit the full training state every N steps or
epochs, resume a killed run, keep the best, and move a ref only when told to.

Usable from a plain loop; :func:`casstore.torch.lightning_callback` wraps it for Lightning::

    cb = CheckpointCallback(repo, "bert", every_n_steps=500, monitor="val_loss",
                            optimizer=opt, scheduler=sched)
    start = cb.resume(model) or 0          # the step of the last checkpoint, None if fresh
    for step in range(start + 1, total + 1):
        ...
        cb.step(model, step=step, metrics={"val_loss": val_loss})
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from casstore.errors import InvalidInputError, NotFoundError
from casstore.ops.regression import RegressionPolicy
from casstore.repo.catalog import Version
from casstore.repo.keys import check_name
from casstore.repo.manifest import VersionType
from casstore.repository import Repository
from casstore.torch._common import StoreLike, resolve_version
from casstore.torch.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

Action = Literal["skipped", "none", "promoted", "refused-promotion", "rolled-back"]


@dataclass
class CheckpointEvent:
    """What one :meth:`CheckpointCallback.step` call did."""

    step: int | None
    epoch: int | None
    version: Version | None = None  # None when nothing was committed
    best: bool = False  # the version became the best by the monitored metric
    action: Action = "skipped"  # what happened to ``promote_ref``
    violations: list[str] = field(default_factory=list)

    @property
    def committed(self) -> bool:
        return self.version is not None


class CheckpointCallback:
    """Commits the training state every ``every_n_steps`` steps and/or ``every_n_epochs``
    epochs, through :func:`~casstore.torch.save_checkpoint`: the model's weights, the
    ``optimizer`` and ``scheduler`` states when given, the step and epoch, and the RNG states.

    Call :meth:`step` after every optimizer step with ``step=`` (the number of steps done, so
    it fires at N, 2N, ...) and/or at the end of every epoch with ``epoch=`` (0-based, so it
    fires after epochs N-1, 2N-1, ...); given both, either boundary fires. ``force=True``
    commits regardless. :meth:`resume` restores the newest checkpoint and returns its step.

    Each commit records ``metrics`` as the version's performance metrics and the step and
    epoch in its ``extra`` metadata. With ``monitor``, the best version so far (``mode`` min or
    max) carries ``best_tag``. Refs move only when told: ``best_ref`` (default None) points at
    the best version, and ``promote_ref`` (default None; serving refs such as ``production``
    are never moved by training unless named here) is offered each checkpoint that has the
    monitored metric (any checkpoint without ``monitor``): without a ``policy`` it is
    promoted; with one, ``on_regression="refuse"`` promotes only a version that does not
    regress against the ref's version, and ``"rollback"`` promotes first and rolls the ref
    back when the version regresses (both moves land in the reflog, the second with trigger
    ``metric-regression``).
    """

    def __init__(
        self,
        store: StoreLike,
        model: str,
        *,
        every_n_steps: int | None = None,
        every_n_epochs: int | None = None,
        monitor: str | None = None,
        mode: Literal["min", "max"] = "min",
        best_tag: str | None = "best",
        best_ref: str | None = None,
        promote_ref: str | None = None,
        optimizer: Any = None,
        scheduler: Any = None,
        rng: bool = True,
        policy: RegressionPolicy | None = None,
        on_regression: Literal["refuse", "rollback"] = "refuse",
        version_type: VersionType = "beta",
        filename: str = "model.safetensors",
        max_shard_size: int | None = None,
        **commit_options: Any,
    ) -> None:
        for label, n in (("every_n_steps", every_n_steps), ("every_n_epochs", every_n_epochs)):
            if n is not None and (not isinstance(n, int) or n < 1):
                raise InvalidInputError(f"{label} must be a positive integer, got {n!r}")
        if mode not in ("min", "max") or on_regression not in ("refuse", "rollback"):
            raise InvalidInputError("mode is 'min' or 'max'; on_regression 'refuse' or 'rollback'")
        self._owns_repo = not isinstance(store, Repository)
        self.repo = store if isinstance(store, Repository) else Repository(store)
        self.model = check_name("model", model)
        self.every_n_steps, self.every_n_epochs = every_n_steps, every_n_epochs
        self.monitor, self.mode = monitor, mode
        self.best_tag = None if best_tag is None else check_name("tag", best_tag)
        self.best_ref = None if best_ref is None else check_name("ref", best_ref)
        self.promote_ref = None if promote_ref is None else check_name("ref", promote_ref)
        self.policy, self.on_regression = policy, on_regression
        self.version_type = version_type
        self.filename, self.max_shard_size = filename, max_shard_size
        self.optimizer, self.scheduler, self.rng = optimizer, scheduler, rng
        self.commit_options = commit_options
        self.resumed: Checkpoint | None = None
        self._last: tuple[str, int] | None = None
        self._best: float | None = None
        self._best_loaded = False

    # -- the training-loop hook ----------------------------------------------------------
    def step(
        self,
        model_or_state_dict: Any,
        *,
        step: int | None = None,
        epoch: int | None = None,
        metrics: Mapping[str, Any] | None = None,
        force: bool = False,
    ) -> CheckpointEvent:
        """Commit if a step or epoch boundary is due (or ``force``); see the class docs."""
        event = CheckpointEvent(step, epoch)
        trigger = self._due(step, epoch)
        if trigger is None and not force:
            return event
        values = _floats(metrics or {})
        options = dict(self.commit_options)
        version_extra = options.pop("extra", None)
        what = f"step {step}" if step is not None else f"epoch {epoch}"
        options.setdefault("change_log", f"checkpoint at {what}")
        result = save_checkpoint(
            self.repo,
            self.model,
            model=model_or_state_dict,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            step=step,
            epoch=epoch,
            rng=self.rng,
            version_extra=version_extra,
            filename=self.filename,
            max_shard_size=self.max_shard_size,
            metrics=values,
            version_type=self.version_type,
            **options,
        )
        self._last = trigger
        event.version = result.version
        bad = sorted(k for k, x in values.items() if not math.isfinite(x))
        if bad:  # a diverged run: keep the checkpoint, never call it best or promote it
            event.action, event.violations = (
                "refused-promotion",
                [f"{k} is not finite" for k in bad],
            )
            return event
        event.best = self._update_best(result.version, values)
        if self.monitor is not None and self.monitor not in values:
            event.action = "none"  # nothing to judge it by: never moved onto a ref
            return event
        event.action, event.violations = self._promote(result.version)
        return event

    def _due(self, step: int | None, epoch: int | None) -> tuple[str, int] | None:
        if step is not None and self.every_n_steps is not None and step > 0 \
                and step % self.every_n_steps == 0:
            key = ("step", step)
        elif epoch is not None and self.every_n_epochs is not None \
                and (epoch + 1) % self.every_n_epochs == 0:
            key = ("epoch", epoch)
        else:
            return None
        return key if key != self._last else None

    # -- resuming ------------------------------------------------------------------------
    def resume(self, model: torch.nn.Module | None = None, version: str = "latest"
               ) -> int | None:
        """Restore ``model``, the optimizer, the scheduler and (with ``rng``) the random
        generators from the newest checkpoint (or ``version``); returns its step (None, with
        nothing touched, when the model has no checkpoint yet). The checkpoint is kept as
        :attr:`resumed` (its ``epoch``, ``extra``)."""
        if not self.repo.catalog.has_versions(self.model):
            return None
        parts = ["rng"] + [p for p, o in (("model", model), ("optimizer", self.optimizer),
                                          ("scheduler", self.scheduler)) if o is not None]
        ckpt = load_checkpoint(self.repo, self.model, version, parts=parts)
        ckpt.restore(model, self.optimizer, self.scheduler, rng=self.rng)
        self.resumed = ckpt
        if ckpt.step is not None:
            self._last = ("step", ckpt.step)
        elif ckpt.epoch is not None:
            self._last = ("epoch", ckpt.epoch)
        return ckpt.step

    # -- best ----------------------------------------------------------------------------
    def best_value(self) -> float | None:
        """The monitored metric of the best version so far (read back from the store once,
        so a resumed run keeps comparing against the earlier best)."""
        if not self._best_loaded:
            self._best_loaded = True
            v = self._stored_best()
            if v is not None and self.monitor in v.metrics:
                self._best = v.metrics[self.monitor]
        return self._best

    def _stored_best(self) -> Version | None:
        if self.best_ref is not None:
            rec, _ = self.repo.refs.read(self.model, self.best_ref)
            if rec is not None and rec.value is not None and rec.value.target is not None:
                return resolve_version(self.repo, self.model, rec.value.target.version)
        if self.best_tag is not None:
            try:  # the catalog: one head and its segments, no manifest
                tagged = [v for v in self.repo.versions(self.model) if self.best_tag in v.tags]
            except NotFoundError:
                return None
            return tagged[-1] if tagged else None
        return None

    def _update_best(self, v: Version, metrics: dict[str, float]) -> bool:
        if self.monitor is None or self.monitor not in metrics:
            return False
        value, best = metrics[self.monitor], self.best_value()
        if best is not None and not (value < best if self.mode == "min" else value > best):
            return False
        self._best = value
        if self.best_tag is not None:
            previous = [o for o in self.repo.versions(self.model) if self.best_tag in o.tags]
            self.repo.tag(self.model, v.version, self.best_tag)
            for o in previous:
                if o.version != v.version:
                    self.repo.untag(self.model, o.version, self.best_tag)
        if self.best_ref is not None:
            self.repo.set_ref(
                self.model,
                self.best_ref,
                v.version,
                reason=f"best {self.monitor}={value:g}",
                trigger="promote",
            )
        return True

    # -- promotion under the policy ------------------------------------------------------
    def _promote(self, v: Version) -> tuple[Action, list[str]]:
        ref = self.promote_ref
        if ref is None:
            return "none", []
        rec, _ = self.repo.refs.read(self.model, ref)
        target = None if rec is None or rec.value is None else rec.value.target
        if target is not None and target.version == v.version:
            return "promoted", []  # the first version of a model: the commit set the ref
        if self.policy is None or target is None:
            r = self.repo.set_ref(
                self.model, ref, v.version, reason="checkpoint", trigger="promote"
            )
            return ("promoted" if r.ok else "none"), []
        if self.on_regression == "refuse":
            out = self.repo.check_regression(self.model, self.policy, ref=ref, candidate=v.version)
            return ("promoted" if out["action"] == "promoted" else "refused-promotion"), list(
                out["violations"]
            )
        self.repo.set_ref(self.model, ref, v.version, reason="checkpoint", trigger="promote")
        out = self.repo.check_regression(self.model, self.policy, ref=ref)
        if out["violations"]:
            return "rolled-back", list(out["violations"])
        return "promoted", []

    def close(self) -> None:
        if self._owns_repo:
            self.repo.store.close()

    def __enter__(self) -> CheckpointCallback:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {
        str(k): float(v.item() if isinstance(v, torch.Tensor) else v) for k, v in metrics.items()
    }
