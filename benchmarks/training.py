"""A real training run as a checkpoint series: every weight changes at every save.

A small GPT-style transformer is trained with AdamW on CPU (deterministic seed) on tokens drawn
from a fixed random Markov chain, so the loss really falls and the weights move the way they
do in training, not by added noise. Every ``save_every`` steps it writes

    fp32/step_NNNN.safetensors      the weights, fp32
    bf16/step_NNNN.safetensors      the same weights cast to bf16
    optim/step_NNNN.pt              AdamW's state (torch.save of optimizer.state_dict())

Exact dedup saves almost nothing on such a series; float-aware encodings and deltas to the
previous checkpoint do (issue 13). ``python -m benchmarks.training OUT [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

KINDS = ("fp32", "bf16", "optim")


@dataclass(frozen=True)
class RunConfig:
    vocab: int = 512
    d_model: int = 256
    layers: int = 4
    heads: int = 4
    seq: int = 32
    batch: int = 4
    steps: int = 160
    save_every: int = 20
    lr: float = 1e-3
    warmup: int = 20
    weight_decay: float = 0.1
    seed: int = 0
    init_from: str | None = None  # fine-tune: start from these fp32 weights (safetensors)


QUICK = RunConfig(vocab=256, d_model=64, layers=2, heads=2, seq=16, batch=4, steps=8,
                  save_every=2, warmup=4)


def _model(cfg: RunConfig):
    import torch
    from torch import nn

    class GPT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(cfg.vocab, cfg.d_model)
            self.pos = nn.Embedding(cfg.seq, cfg.d_model)
            layer = nn.TransformerEncoderLayer(
                cfg.d_model, cfg.heads, 4 * cfg.d_model, dropout=0.0, batch_first=True,
                norm_first=True, activation="gelu",
            )
            self.blocks = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(cfg.d_model)
            self.head = nn.Linear(cfg.d_model, cfg.vocab, bias=False)
            for p in self.parameters():
                if p.dim() > 1:
                    nn.init.normal_(p, 0.0, 0.02)
            mask = torch.triu(torch.full((cfg.seq, cfg.seq), float("-inf")), diagonal=1)
            self.register_buffer("mask", mask, persistent=False)

        def forward(self, x):
            h = self.embed(x) + self.pos(torch.arange(x.shape[1]))
            h = self.blocks(h, mask=self.mask, is_causal=True)
            return self.head(self.norm(h))

    return GPT()


def _batches(cfg: RunConfig):
    """Token sequences from a sparse random Markov chain (a learnable, fixed 'language')."""
    import torch

    g = torch.Generator().manual_seed(cfg.seed + 1)
    nxt = torch.randint(0, cfg.vocab, (cfg.vocab, 4), generator=g)  # 4 likely successors
    while True:
        tok = torch.randint(0, cfg.vocab, (cfg.batch,), generator=g)
        seq = [tok]
        for _ in range(cfg.seq):
            pick = torch.randint(0, 4, (cfg.batch,), generator=g)
            tok = nxt[tok, pick]
            seq.append(tok)
        s = torch.stack(seq, dim=1)
        yield s[:, :-1], s[:, 1:]


def train_series(out: Path, cfg: RunConfig = RunConfig()) -> dict:
    """Train and save; returns {"files": {kind: [paths]}, "logical_bytes": {kind: n}, ...}."""
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(cfg.seed)
    model = _model(cfg)
    if cfg.init_from:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(cfg.init_from))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / cfg.warmup))
    for kind in KINDS:
        (out / kind).mkdir(parents=True, exist_ok=True)
    files: dict[str, list[str]] = {k: [] for k in KINDS}
    losses: list[float] = []
    data = _batches(cfg)
    t0 = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        x, y = next(data)
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % cfg.save_every == 0:
            losses.append(round(float(loss.detach()), 4))
            name = f"step_{step:04d}"
            sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
            paths = {
                "fp32": out / "fp32" / f"{name}.safetensors",
                "bf16": out / "bf16" / f"{name}.safetensors",
                "optim": out / "optim" / f"{name}.pt",
            }
            save_file(sd, str(paths["fp32"]))
            save_file({k: v.to(torch.bfloat16) for k, v in sd.items()}, str(paths["bf16"]))
            torch.save(opt.state_dict(), paths["optim"])
            for k, p in paths.items():
                files[k].append(str(p))
    info = {
        "config": asdict(cfg),
        "params": sum(p.numel() for p in model.parameters()),
        "files": files,
        "losses": losses,
        "logical_bytes": {k: sum(Path(p).stat().st_size for p in v) for k, v in files.items()},
        "train_seconds": round(time.perf_counter() - t0, 2),
    }
    (out / "info.json").write_text(json.dumps(info, indent=2))
    return info


def load_series(out: Path) -> dict:
    """What :func:`train_series` returned for the run saved in ``out`` (``out/info.json``)."""
    info = json.loads((out / "info.json").read_text())
    missing = [p for paths in info["files"].values() for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"{out}: checkpoints missing: {missing[:3]}")
    return info


_WIDTH = {"F32": 4, "BF16": 2, "F16": 2}


def _float_tensors(path: str) -> dict[str, tuple[int, bytes | memoryview]]:
    """A safetensors file's float tensors: name -> (bytes per value, raw bytes)."""
    raw = memoryview(Path(path).read_bytes())
    n = int.from_bytes(raw[:8], "little")
    head = json.loads(bytes(raw[8 : 8 + n]))
    out = {}
    for name, e in head.items():
        if name != "__metadata__" and e["dtype"] in _WIDTH:
            a, b = e["data_offsets"]
            out[name] = (_WIDTH[e["dtype"]], raw[8 + n + a : 8 + n + b])
    return out


def stream_entropy(paths: list[str]) -> dict[str, float]:
    """What coding byte-grouped streams can reach on a checkpoint series, in bytes as a
    fraction of the files' bytes: every float tensor's values rotated left one bit (as
    casstore's split streams are), byte k of each value in stream k, each stream costed at its
    order-0 Shannon entropy (per tensor and stream; headers counted whole):

    * ``plain``: every checkpoint alone;
    * ``xor_previous``: each checkpoint after the first XOR-ed with the previous one (the
      deltas' transform, at the shortest distance; casstore's fast policy deltas against a
      keyframe, which is further away);
    * ``given_previous``: each byte given the same byte of the previous checkpoint's value
      (conditional entropy: what a context model that reads the parent could reach, beyond
      any transform-then-entropy-code scheme such as XOR + zstd).

    Estimates from counts (bias-corrected), not guarantees: zstd adapts per 128 KiB block
    and finds repeats, so it can land a little below an order-0 figure.
    """
    import numpy as np

    def h(counts) -> float:
        """Entropy in bits per symbol, Miller-Madow corrected: the plug-in estimate falls
        short by about (bins used - 1) / (2 N ln 2), which matters for the 65,536 bins of a
        joint count over a tensor of a few 10,000 values."""
        used = counts[counts > 0]
        p = used / used.sum()
        return float(-(p * np.log2(p)).sum() + (len(used) - 1) / (2 * used.sum() * np.log(2)))

    def streams(width: int, buf) -> list:
        kind = {2: np.uint16, 4: np.uint32}[width]
        v = np.frombuffer(buf, kind)
        r = (v << kind(1)) | (v >> kind(8 * width - 1))
        return [((r >> kind(8 * k)) & kind(255)).astype(np.uint8) for k in range(width)]

    files = sum(Path(p).stat().st_size for p in paths)
    bits = {"plain": 0.0, "xor_previous": 0.0, "given_previous": 0.0}
    previous: dict[str, list] = {}
    for path in paths:
        tensors = _float_tensors(path)
        header = Path(path).stat().st_size - sum(len(b) for _, b in tensors.values())
        for key in bits:
            bits[key] += 8 * header
        current = {}
        for name, (width, buf) in tensors.items():
            new = current[name] = streams(width, buf)
            old = previous.get(name)
            if old is not None and len(old[0]) != len(new[0]):
                old = None
            for k, s in enumerate(new):
                plain = h(np.bincount(s, minlength=256)) * len(s)
                bits["plain"] += plain
                if old is None:
                    bits["xor_previous"] += plain
                    bits["given_previous"] += plain
                    continue
                bits["xor_previous"] += h(np.bincount(s ^ old[k], minlength=256)) * len(s)
                joint = np.bincount(old[k].astype(np.uint16) << 8 | s, minlength=1 << 16)
                bits["given_previous"] += (h(joint) - h(np.bincount(old[k], minlength=256))
                                           ) * len(s)
        previous = current
    return {k: round(v / 8 / files, 4) for k, v in bits.items()}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--quick", action="store_true", help="a tiny model, a few steps")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--layers", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--warmup", type=int)
    ap.add_argument("--weight-decay", type=float)
    ap.add_argument("--init-from", help="fine-tune: start from these fp32 weights")
    a = ap.parse_args()
    run = QUICK if a.quick else RunConfig()
    given = {k: v for k, v in vars(a).items() if k in asdict(run) and v is not None}
    run = RunConfig(**{**asdict(run), **given})
    print(json.dumps(train_series(a.out, run), indent=2))
