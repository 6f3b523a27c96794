"""A small deterministic CPU training run for the resume test: 3 epochs, full state saved by
the callback after each. ``python _train_worker.py STORE OUT [--hang-after-epoch N]``:
after saving epoch N it prints ``saved N`` and sleeps, waiting to be killed with SIGKILL."""

from __future__ import annotations

import sys
import time

import torch

import casstore.torch as ct

EPOCHS, BATCHES, BATCH = 3, 5, 8


def main() -> None:
    store, out = sys.argv[1], sys.argv[2]
    hang = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--hang-after-epoch" else -1
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = torch.randn(BATCHES * BATCH, 6)
    target = data @ torch.randn(6, 2) + 0.1 * torch.randn(BATCHES * BATCH, 2)
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                              torch.nn.Linear(16, 2))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=BATCHES, gamma=0.7)
    cb = ct.CheckpointCallback(store, "run", every_n_epochs=1, optimizer=opt, scheduler=sched,
                               monitor="loss")
    step = cb.resume(net) or 0  # a fresh run starts at 0; a resumed one after its last epoch
    for epoch in range(step // BATCHES, EPOCHS):
        order = torch.randperm(len(data))  # the global RNG: restored on resume
        net.train()
        for b in range(BATCHES):
            idx = order[b * BATCH : (b + 1) * BATCH]
            loss = torch.nn.functional.mse_loss(net(data[idx]), target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
        cb.step(net, step=step, epoch=epoch, metrics={"loss": loss.item()})
        print(f"saved {epoch}", flush=True)
        if epoch == hang:
            time.sleep(600)
    torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "step": step}, out)
    print("done", flush=True)


if __name__ == "__main__":
    main()
