"""save_checkpoint / load_checkpoint: full training state round-trips exactly, tensors are
deduplicated and read lazily, nothing is unpickled, and what cannot be stored is refused."""

from __future__ import annotations

import msgpack
import pytest

torch = pytest.importorskip("torch")

import casstore.torch as ct  # noqa: E402
from casstore import CorruptObjectError, InvalidInputError, NotFoundError, Repository  # noqa: E402
from casstore.store import MemoryStore  # noqa: E402
from casstore.testing.stores import CountingStore  # noqa: E402
from casstore.torch._state import flatten, unflatten  # noqa: E402
from casstore.torch.checkpoint import STATE_FILE, TENSORS_FILE  # noqa: E402


def trained(steps: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, betas=(0.8, 0.99))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for _ in range(steps):
        opt.zero_grad()
        net(torch.randn(8, 4)).pow(2).mean().backward()
        opt.step()
        sched.step()
    return net, opt, sched


def identical(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return (isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
                and torch.equal(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(identical(a[k], b[k])
                                                                  for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(identical, a, b))
    return type(a) is type(b) and a == b


def test_full_state_round_trips_exactly(repo: Repository):
    net, opt, sched = trained()
    extra = {"note": "warmup", 7: (1, 2.5, None, True), "nested": [{"t": torch.arange(4)}],
             "big": 2**63 + 5, "neg": -(2**63), "inf": float("inf"), "raw": b"\x00\xff"}
    res = ct.save_checkpoint(repo, "m", model=net, optimizer=opt, scheduler=sched, step=3,
                             epoch=1, extra=extra, metrics={"loss": 0.5},
                             params={"optimizer": "adamw"})
    paths = [f.path for f in res.version.manifest.files]
    assert paths == ["model.safetensors", TENSORS_FILE, STATE_FILE]
    assert res.version.manifest.extra["step"] == 3 and res.version.params["optimizer"] == "adamw"
    ck = ct.load_checkpoint(repo.store.url, "m")
    assert identical(ck.optimizer, opt.state_dict())  # int keys, tuples, 0-d step tensors
    assert identical(ck.scheduler, sched.state_dict())
    assert identical(ck.extra, extra)
    assert identical(ck.model, dict(net.state_dict()))
    assert (ck.step, ck.epoch) == (3, 1)
    # the weights are a standard model version: load() and followers see only them
    assert sorted(ct.load(repo, "m", "latest")) == sorted(net.state_dict())


def test_restore_into_fresh_objects_continues_identically(repo: Repository):
    net, opt, sched = trained(steps=2)
    ct.save_checkpoint(repo, "m", model=net, optimizer=opt, scheduler=sched, step=2)
    after = torch.randn(3)  # the RNG continues from here in the original run
    net2, opt2, sched2 = trained(steps=0, seed=9)
    assert ct.resume(repo, "m", model=net2, optimizer=opt2, scheduler=sched2) == 2
    assert torch.equal(torch.randn(3), after)  # RNG restored
    for n, o, s in ((net, opt, sched), (net2, opt2, sched2)):
        o.zero_grad()
        n(torch.ones(2, 4)).sum().backward()
        o.step()
        s.step()
    assert identical(dict(net2.state_dict()), dict(net.state_dict()))
    assert identical(opt2.state_dict(), opt.state_dict())


def test_resume_on_a_fresh_model_returns_none(repo: Repository):
    net, opt, _ = trained(steps=0)
    assert ct.resume(repo, "nothing-yet", model=net, optimizer=opt) is None


def test_unchanged_tensors_are_stored_once_and_read_lazily(tmp_path):
    inner = MemoryStore()
    store = CountingStore(inner)
    repo = Repository(store)
    net, opt, sched = trained()
    big = {"table": torch.randn(256, 256)}  # 256 KiB that does not change between saves
    ct.save_checkpoint(repo, "m", model=net, optimizer=opt, scheduler=sched, extra=big)
    net.train()
    opt.step()  # the optimizer's tensors change; "table" does not
    second = ct.save_checkpoint(repo, "m", model=net, optimizer=opt, scheduler=sched, extra=big)
    assert second.new_bytes < 256 * 256 * 4 / 4
    fresh = Repository(CountingStore(inner))
    ck = ct.load_checkpoint(fresh, "m", parts=["model"])
    assert ck.optimizer is None and ck.extra is None and ck.model is not None
    assert fresh.store.bytes_read < 256 * 256 * 4 / 4  # the table's chunks were not read
    with pytest.raises(InvalidInputError, match="unknown checkpoint parts"):
        ct.load_checkpoint(fresh, "m", parts=["weights"])


@pytest.mark.parametrize("bad, where", [
    ({"x": __import__("numpy").float32(1.0)}, "state/extra/x"),
    ({"f": print}, "state/extra/f"),
    ({"deep": [{"o": object()}]}, "state/extra/deep/0/o"),
    ({"big": 2**64}, "does not fit 64 bits"),
    ({torch.ones(1): 1}, "as a dict key"),
])
def test_values_that_cannot_be_stored_are_refused_before_storing(repo: Repository, bad, where):
    net, _, _ = trained(steps=0)
    before = sorted(i.key for i in repo.store.list(""))
    with pytest.raises(InvalidInputError, match=where):
        ct.save_checkpoint(repo, "m", model=net, extra=bad)
    assert sorted(i.key for i in repo.store.list("")) == before


def test_skeleton_decoding_runs_no_code():
    raw, tensors = flatten({"a": (1, torch.zeros(2)), 3: [None]}, "s")
    assert list(tensors) == ["s/a/1"]
    tree = unflatten(raw)
    assert tree["a"][0] == 1 and tree[3] == [None]
    evil = msgpack.packb({"x": msgpack.ExtType(42, b"os.system('true')")})
    with pytest.raises(CorruptObjectError, match="unknown msgpack extension"):
        unflatten(evil)
    with pytest.raises(CorruptObjectError):
        unflatten(b"\xc1garbage")


def test_a_plain_model_version_is_not_a_checkpoint(repo: Repository):
    net, _, _ = trained(steps=0)
    ct.save(net, repo, "m")
    with pytest.raises(NotFoundError, match="not a training checkpoint"):
        ct.load_checkpoint(repo, "m")
