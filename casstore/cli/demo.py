"""``casstore demo``: commit a small model series, show the savings, roll back, collect garbage.

Builds safetensors files by hand (no torch needed): a base model, a fine-tune of its last
third of layers, the same weights with a longer header, and a regressed release, then walks
through the rollback flow on the chosen store.
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from casstore.cli import _shapes as shapes
from casstore.cli._common import AddCommand, positive_count, store_url
from casstore.cli._render import human_bytes

MODEL = "demo-llm"


def write_safetensors(path: Path, tensors: dict[str, bytes], metadata: dict[str, str]) -> None:
    """A valid safetensors file of F32 vectors (the format is a JSON header + raw payloads)."""
    _write(path, {name: len(data) for name, data in tensors.items()}, tensors.__getitem__,
           metadata)


def _write(path: Path, sizes: dict[str, int], produce: Callable[[str], bytes],
           metadata: dict[str, str]) -> None:
    """``write_safetensors`` with each payload made by ``produce(name)`` as it is written (one
    tensor in memory at a time)."""
    header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, n in sizes.items():
        header[name] = {"dtype": "F32", "shape": [n // 4], "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name, n in sizes.items():
            data = produce(name)
            assert len(data) == n
            f.write(data)


_FINITE = bytes(b & 0x3F for b in range(256))  # top exponent bits cleared: no NaN or Inf


def _weights(rng: random.Random, n: int) -> bytes:
    """``n`` random bytes that read as finite little-endian F32 values."""
    data = bytearray(rng.randbytes(n))
    data[3::4] = data[3::4].translate(_FINITE)
    return bytes(data)


def make_series(folder: Path, size_mb: int, seed: int = 0) -> list[Path]:
    """Four checkpoints: a base, a fine-tune of its last third of tensors, the same weights
    with other metadata, a regression that also changes the first sixth. Each tensor is made
    from its own seed as it is written, so the demo holds one tensor at a time."""
    layers = 12
    per_tensor = max(4096, (size_mb << 20) // (layers * 2)) // 4 * 4
    names = [f"layers.{i}.{part}.weight" for i in range(layers) for part in ("attn", "mlp")]
    tuned = dict.fromkeys(names[-(len(names) // 3) :], 1)
    regressed = {**tuned, **dict.fromkeys(names[: len(names) // 6], 2)}
    paths = []
    for i, (variant, meta) in enumerate(
        [
            ({}, {"stage": "base"}),
            (tuned, {"stage": "fine-tune"}),
            (tuned, {"stage": "fine-tune", "notes": "same weights, longer header " + "x" * 200}),
            (regressed, {"stage": "regressed"}),
        ]
    ):
        p = folder / f"v{i}" / "model.safetensors"
        p.parent.mkdir(parents=True)
        _write(p, dict.fromkeys(names, per_tensor),
               lambda name, v=variant: _weights(  # type: ignore[misc]
                   random.Random(f"{seed}/{name}/{v.get(name, 0)}"), per_tensor),
               meta)
        paths.append(p)
    return paths


def run_demo(store: str, *, size_mb: int = 64, as_json: bool = False) -> int:
    from casstore.repository import Repository

    repo = Repository(store)
    out: dict[str, Any] = {"store": repo.store.url, "model_name": MODEL, "steps": []}

    def say(text: str) -> None:
        out["steps"].append(text)
        if not as_json:
            print(text)

    with tempfile.TemporaryDirectory(prefix="casstore-demo-") as tmp:
        paths = make_series(Path(tmp), size_mb)
        say(f"casstore demo on {repo.store.url}: {len(paths)} checkpoints of ~{size_mb} MiB")
        plan = [
            ("release", {"accuracy": 0.90, "loss": 0.40}, ["stable"], "base model"),
            ("release", {"accuracy": 0.93, "loss": 0.31}, [], "fine-tune last third of layers"),
            ("beta", {"accuracy": 0.93, "loss": 0.31}, [], "same weights, new metadata"),
            ("release", {"accuracy": 0.81, "loss": 0.55}, [], "new data mix (regressed)"),
        ]
        committed = []
        for path, (vtype, metrics, tags, log) in zip(paths, plan, strict=True):
            res = repo.commit(
                MODEL,
                [path],
                version_type=vtype,
                metrics=metrics,
                tags=tags,
                change_log=log,
                ref="current" if vtype == "release" else None,
            )
            committed.append(res.version)
            say(
                f"commit {res.version.name} [{vtype}] {human_bytes(res.logical_bytes)}: "
                f"{human_bytes(res.new_bytes)} new ({res.new_chunks}/{res.chunks} chunks)"
            )
        first, tuned = committed[0], committed[1]
        c = repo.compare(MODEL, first.version, tuned.version)
        tdiff = c.files[0].tensors
        say(
            f"diff {first.version} -> {tuned.version}: {len(tdiff.changed)} tensors changed, "
            f"{tdiff.unchanged} unchanged; {human_bytes(c.bytes_new)} new"
        )
        st = repo.stats(MODEL).to_dict()
        pm = st["per_model"][MODEL]
        say(
            f"savings: {human_bytes(pm['logical_bytes'])} logical stored as "
            f"{human_bytes(pm['unique_bytes'])} ({pm['dedup_ratio']:.2f}x dedup)"
        )
        say(f"current -> {repo.resolve(MODEL).version} (accuracy 0.81: a regression)")
        res = repo.rollback(MODEL, reason="accuracy regression in demo")
        say(f"rollback --previous-stable: {res.message}")
        out["rollback"] = shapes.ref_move(repo, res)
        gc_summary = _collect_garbage(repo)
        if gc_summary:
            say(gc_summary)
        for e in repo.refs.reflog(MODEL, "current")[-3:]:
            say(
                f"reflog current #{e.seq}: {e.old.describe() if e.old else '-'} -> "
                f"{e.new.describe() if e.new else '-'} ({e.trigger}: {e.reason})"
            )
    out["stats"] = st
    if as_json:
        print(json.dumps(out, indent=2, default=str))
    return 0


def _collect_garbage(repo: Any) -> str | None:
    """Expire what no rule keeps (the beta and the regressed release) and reclaim their
    unique chunks; the stable-tagged version and what refs point at stay."""
    try:
        from casstore.ops.gc import GarbageCollector, RetentionPolicy
    except ImportError:  # pragma: no cover - GC ships with the package
        return None
    policy = RetentionPolicy(keep_tags=("stable",), keep_reflog_seconds=0)
    gc = GarbageCollector(repo.ctx, grace_seconds=0)
    plan = gc.plan(policy, models=[MODEL])
    report = gc.execute(plan)
    return (
        f"gc (keep stable-tagged versions and ref targets): expired "
        f"{', '.join(e.version for e in plan.expire)}, "
        f"reclaimed {report.objects_deleted} objects / {human_bytes(report.bytes_freed)}"
    )


def cmd_demo(args: argparse.Namespace) -> int:
    return run_demo(store_url(args), size_mb=args.size_mb, as_json=args.json)


def add_parser(add: AddCommand) -> None:
    """Add ``casstore demo``."""
    sp = add("demo", cmd_demo, "commit versions, show savings, roll back, collect garbage")
    sp.add_argument("--size-mb", type=positive_count, default=64, help="size of the demo model")
