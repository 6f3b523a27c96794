"""Full training state: save it as a version, load it back exactly, resume a killed run.

A checkpoint version holds the model's weights as a standard ``model.safetensors`` (so
``load``, ``checkout`` and followers serve it like any saved model) and the rest under
``training-state/``: ``tensors.safetensors`` (every optimizer, scheduler and extra tensor,
chunked at tensor boundaries, so unchanged tensors are stored once across checkpoints) and
``state.msgpack`` (the structure: nested dicts, lists, ints, floats, strings; see
:mod:`casstore.torch._state`; no pickle, so loading runs no code)::

    ct.save_checkpoint(store, "bert", model=net, optimizer=opt, scheduler=sched, step=step)
    step = ct.resume(store, "bert", model=net, optimizer=opt, scheduler=sched)  # or None

Random number generator states (torch, CUDA when present, Python ``random``, numpy) are saved
too (``rng=True``), so a resumed run draws the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from casstore.errors import InvalidInputError, NotFoundError
from casstore.repo.catalog import Version
from casstore.repo.files import VersionFile
from casstore.repository import CommitResult
from casstore.torch._common import StoreLike, open_repo, resolve_version
from casstore.torch._reading import TRAINING_STATE_DIR, TensorIndex
from casstore.torch._state import fill, flatten, refs, unflatten
from casstore.torch.serialization import DEFAULT_FILENAME, build_sources, state_dict_of

STATE_DIR = TRAINING_STATE_DIR
STATE_FILE = STATE_DIR + "state.msgpack"
TENSORS_FILE = STATE_DIR + "tensors.safetensors"
FORMAT = "casstore-training-state/1"
PARTS = ("model", "optimizer", "scheduler", "extra", "rng")
MAX_STATE = 256 << 20


@dataclass
class Checkpoint:
    """A loaded training state. Parts not asked for (``parts=``) are None and were not read."""

    version: Version
    model: dict[str, torch.Tensor] | None
    optimizer: Any
    scheduler: Any
    step: int | None
    epoch: int | None
    extra: Any
    rng: Any

    def restore(
        self,
        model: torch.nn.Module | None = None,
        optimizer: Any = None,
        scheduler: Any = None,
        *,
        rng: bool = True,
    ) -> int | None:
        """Load the saved states into the given objects (each must have been saved) and, with
        ``rng``, the random number generators; returns the saved step."""
        for label, target, saved in (("model", model, self.model),
                                     ("optimizer", optimizer, self.optimizer),
                                     ("scheduler", scheduler, self.scheduler)):
            if target is None:
                continue
            if saved is None:
                raise NotFoundError(f"{self.version.name} holds no {label} state to restore")
            try:
                target.load_state_dict(saved)
            except (RuntimeError, KeyError, ValueError) as e:
                raise InvalidInputError(f"cannot restore the {label} of {self.version.name}: "
                                        f"{e}") from None
        if rng and self.rng is not None:
            set_rng_state(self.rng)
        return self.step


def save_checkpoint(
    store: StoreLike,
    model_name: str,
    *,
    model: torch.nn.Module | Mapping[str, torch.Tensor] | None = None,
    optimizer: Any = None,
    scheduler: Any = None,
    step: int | None = None,
    epoch: int | None = None,
    extra: Any = None,
    rng: bool = True,
    version_extra: Mapping[str, Any] | None = None,
    filename: str = DEFAULT_FILENAME,
    max_shard_size: int | None = None,
    **commit_options: Any,
) -> CommitResult:
    """Commit a full training state as a new version of ``model_name``.

    ``optimizer`` and ``scheduler`` are objects with ``state_dict()`` (or state dicts);
    ``extra`` is any state tree of your own (dicts, lists, numbers, strings, tensors).
    ``step``/``epoch`` are recorded in the state and in the version's ``extra`` metadata
    (with ``version_extra``); ``commit_options`` are :meth:`Repository.commit_sources`'s
    (``metrics=``, ``params=``, ``tags=``, ...). The weights go to ``filename`` (sharded with
    ``max_shard_size``, as :func:`~casstore.torch.save` does). Nothing is stored if any value
    cannot be.
    """
    for label, n in (("step", step), ("epoch", epoch)):
        if n is not None and (isinstance(n, bool) or not isinstance(n, int)):
            raise InvalidInputError(f"{label} must be an int, got {n!r}")
    tree: dict[str, Any] = {"format": FORMAT, "step": step, "epoch": epoch,
                            "model": None, "optimizer": _state(optimizer),
                            "scheduler": _state(scheduler), "extra": extra,
                            "rng": get_rng_state() if rng else None}
    sources: list[tuple[str, int, Any]] = []
    if model is not None:
        weights = state_dict_of(model)
        sources += build_sources(weights, filename, max_shard_size=max_shard_size)
        tree["model"] = {"files": [p for p, _, _ in sources], "order": list(weights)}
    raw, tensors = flatten(tree, "state")
    if tensors:
        sources += build_sources(tensors, TENSORS_FILE)
    sources.append((STATE_FILE, len(raw), lambda off, n: raw[off : off + n]))
    meta = {**(version_extra or {}), "step": step, "epoch": epoch, "training_state": True}
    with open_repo(store) as repo:
        return repo.commit_sources(model_name, sources, extra=meta, **commit_options)


def load_checkpoint(
    store: StoreLike,
    model_name: str,
    version_or_ref: str = "latest",
    *,
    parts: Iterable[str] | None = None,
    map_location: str | torch.device | None = None,
) -> Checkpoint:
    """A training state saved by :func:`save_checkpoint`, exactly as saved. ``parts`` (from
    ``model``, ``optimizer``, ``scheduler``, ``extra``, ``rng``) reads only those tensors."""
    wanted = set(PARTS if parts is None else parts)
    if not wanted <= set(PARTS):
        raise InvalidInputError(f"unknown checkpoint parts {sorted(wanted - set(PARTS))}; "
                                f"choose from {', '.join(PARTS)}")
    with open_repo(store) as repo:
        version = resolve_version(repo, model_name, version_or_ref)
        tree = _read_tree(repo, version)
        chosen = {k: (tree.get(k) if k in wanted else None) for k in PARTS if k != "model"}
        names = refs(chosen)
        tensors = TensorIndex(repo.chunks, version, TENSORS_FILE).read(names) if names else {}
        weights = None
        if "model" in wanted and tree.get("model"):
            index = TensorIndex(repo.chunks, version)  # the weights: every file but the state
            stored = set(index.names)
            order = [n for n in tree["model"].get("order", ()) if n in stored]
            weights = index.read(order + sorted(stored - set(order)))
    filled = fill(chosen, _move(tensors, map_location))
    return Checkpoint(
        version=version,
        model=None if weights is None else _move(weights, map_location),
        optimizer=filled["optimizer"],
        scheduler=filled["scheduler"],
        step=tree.get("step"),
        epoch=tree.get("epoch"),
        extra=filled["extra"],
        rng=filled["rng"],
    )


def resume(
    store: StoreLike,
    model_name: str,
    version_or_ref: str = "latest",
    *,
    model: torch.nn.Module | None = None,
    optimizer: Any = None,
    scheduler: Any = None,
    rng: bool = True,
) -> int | None:
    """Restore the given objects (and the RNGs) from a checkpoint version; returns its step.
    Returns None, touching nothing, when the model has no versions yet (a fresh run)."""
    with open_repo(store) as repo:
        if not repo.catalog.has_versions(model_name):
            return None
        parts = [p for p, o in (("model", model), ("optimizer", optimizer),
                                ("scheduler", scheduler)) if o is not None]
        ckpt = load_checkpoint(repo, model_name, version_or_ref,
                               parts=[*parts, *(["rng"] if rng else [])])
    return ckpt.restore(model, optimizer, scheduler, rng=rng)


def _read_tree(repo: Any, version: Version) -> dict[str, Any]:
    try:
        entry = version.manifest.file(STATE_FILE)
    except NotFoundError:
        raise NotFoundError(f"{version.name} is not a training checkpoint (no {STATE_FILE}; "
                            "save one with casstore.torch.save_checkpoint)") from None
    if entry.size > MAX_STATE:
        raise InvalidInputError(f"{STATE_FILE} of {entry.size} bytes is too large")
    tree = unflatten(VersionFile(repo.chunks, version.manifest, entry).read_range(0, entry.size))
    if not isinstance(tree, dict) or tree.get("format") != FORMAT:
        raise NotFoundError(f"{version.name}: {STATE_FILE} is not a {FORMAT} document")
    return tree


def _state(obj: Any) -> Any:
    if obj is None:
        return None
    fn = getattr(obj, "state_dict", None)
    return fn() if callable(fn) else obj


def _move(tensors: dict[str, torch.Tensor], device: str | torch.device | None
          ) -> dict[str, torch.Tensor]:
    return tensors if device is None else {k: t.to(device) for k, t in tensors.items()}


def get_rng_state() -> dict[str, Any]:
    """The random number generators' states, as a storable tree."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy comes with torch here
        return state
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state["numpy"] = (kind, torch.from_numpy(keys.copy()), int(pos), int(has_gauss),
                      float(cached))
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Put back what :func:`get_rng_state` returned."""
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        import numpy as np

        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy(), pos, has_gauss, cached))
