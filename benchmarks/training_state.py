"""Full training-state checkpoints: bytes stored per checkpoint, and bytes read to resume.

    python -m benchmarks.training_state [--params-m 4] [--checkpoints 4] [--store DIR]

A model whose first half (an embedding table) is frozen and whose second half trains with
AdamW saves its full state (weights, optimizer, scheduler, RNGs) with
``casstore.torch.save_checkpoint`` after every few steps. Reported per checkpoint: the state's
logical bytes, the bytes the store had to add (frozen weights are stored once; every trained
weight and its two AdamW moments change at each step), and the size ``torch.save`` writes for
the same state. Then the bytes read from the store by ``load_checkpoint`` for the whole state
and for ``parts=["model"]`` (lazy: the optimizer's tensors are not read).
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from typing import Any


def run(params_m: float, checkpoints: int, store: str) -> dict[str, Any]:
    import torch

    import casstore.torch as ct
    from casstore import Repository
    from casstore.store import open_store
    from casstore.testing.stores import CountingStore

    torch.manual_seed(0)
    width = 512
    half = int(params_m * 1e6 / 2)
    net = torch.nn.Sequential(torch.nn.Embedding(max(1, half // width), width),
                              torch.nn.Linear(width, max(1, half // width)))
    net[0].weight.requires_grad_(False)  # frozen: never changes, no optimizer state
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.9)
    rows = []
    for i in range(checkpoints):
        for _ in range(3):
            x = torch.randint(0, net[0].num_embeddings, (8,))
            loss = net(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        state = {"model": net.state_dict(), "optimizer": opt.state_dict(),
                 "scheduler": sched.state_dict()}
        buf = io.BytesIO()
        torch.save(state, buf)
        t0 = time.perf_counter()
        res = ct.save_checkpoint(store, "run", model=net, optimizer=opt, scheduler=sched,
                                 step=3 * (i + 1))
        rows.append({"checkpoint": i + 1, "logical_bytes": res.logical_bytes,
                     "new_bytes": res.new_bytes, "torch_save_bytes": buf.tell(),
                     "seconds": round(time.perf_counter() - t0, 3)})
    reads = {}
    for label, parts in (("all", None), ("model", ["model"]), ("optimizer", ["optimizer"])):
        counting = CountingStore(open_store(store))
        t0 = time.perf_counter()
        ct.load_checkpoint(Repository(counting), "run", parts=parts)
        reads[label] = {"bytes_read": counting.bytes_read, "requests": counting.requests,
                        "seconds": round(time.perf_counter() - t0, 3)}
    frozen = net[0].weight.numel() * 4
    return {"params": sum(p.numel() for p in net.parameters()), "frozen_bytes": frozen,
            "checkpoints": rows, "load": reads}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params-m", type=float, default=4.0, help="millions of parameters")
    ap.add_argument("--checkpoints", type=int, default=4)
    ap.add_argument("--store", help="store URL (default: a temporary folder)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="casstore-training-state-") as tmp:
        out = run(args.params_m, args.checkpoints, args.store or f"{tmp}/store")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
