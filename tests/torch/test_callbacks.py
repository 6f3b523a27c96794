"""CheckpointCallback: commits every N, keeps the best, refuses or rolls back regressions."""

from __future__ import annotations

import sys
import types

import pytest

torch = pytest.importorskip("torch")

import casstore.torch as ct  # noqa: E402
from casstore import InvalidInputError, RegressionPolicy, UnsupportedError  # noqa: E402
from casstore.torch.callbacks import CheckpointCallback  # noqa: E402

POLICY = RegressionPolicy.parse(
    '{"rules": [{"metric": "val_loss", "direction": "lower", "threshold": 0.05}]}'
)


def model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Linear(4, 2)


def current(repo, ref: str = "current") -> str:
    return repo.refs.get("m", ref).target.version


def test_commits_every_n_steps_with_metrics_as_metadata(repo):
    cb = CheckpointCallback(repo, "m", every_n_steps=3)
    net = model()
    events = [cb.step(net, step=s, metrics={"loss": 1.0 / s}) for s in range(1, 11)]
    assert [e.step for e in events if e.committed] == [3, 6, 9]
    versions = repo.versions("m")
    assert [v.manifest.extra["step"] for v in versions] == [3, 6, 9]
    assert versions[1].metrics == {"loss": pytest.approx(1 / 6)}
    assert {v.version_type for v in versions} == {"beta"}
    # training moves no ref by default: current stays where the model's first commit set it
    assert current(repo) == "1.0.0" and set(repo.refs.list("m")) == {"current"}
    assert cb.step(net, step=9).committed is False  # the same step twice commits once
    for name, t in ct.load(repo, "m").items():
        assert torch.equal(t, net.state_dict()[name])


def test_commits_every_n_epochs_and_on_force(repo):
    cb = CheckpointCallback(repo, "m", every_n_epochs=2)
    net = model()
    done = [e for e in range(5) if cb.step(net, epoch=e).committed]
    assert done == [1, 3]
    assert cb.step(net, step=1, force=True).committed
    assert len(repo.versions("m")) == 3


def test_promotes_each_checkpoint_only_when_told(repo):
    cb = CheckpointCallback(repo, "m", every_n_steps=1, promote_ref="staging")
    acts = [cb.step(model(i), step=i + 1).action for i in range(3)]
    assert acts == ["promoted"] * 3 and current(repo, "staging") == "1.0.2"


def test_a_checkpoint_without_the_monitored_metric_is_never_promoted(repo):
    cb = CheckpointCallback(repo, "m", every_n_steps=1, monitor="val_loss",
                            promote_ref="production", best_ref="best")
    ev = cb.step(model(), step=1, metrics={"train_loss": 0.1})
    assert ev.committed and ev.action == "none" and not ev.best
    assert set(repo.refs.list("m")) == {"current"}
    ev = cb.step(model(), step=2, metrics={"val_loss": 0.4})
    assert ev.action == "promoted" and ev.best and current(repo, "production") == "1.0.1"
    assert current(repo, "best") == "1.0.1"
    ev = cb.step(model(), step=3, metrics={})
    assert ev.action == "none" and current(repo, "production") == "1.0.1"


def test_keeps_the_best_by_tag_and_ref(repo):
    cb = CheckpointCallback(repo, "m", every_n_steps=1, monitor="val_loss", best_ref="best")
    losses = [0.5, 0.3, 0.4]
    best = [
        cb.step(model(i), step=i + 1, metrics={"val_loss": x}).best for i, x in enumerate(losses)
    ]
    assert best == [True, True, False]
    assert [v.version for v in repo.versions("m") if "best" in v.tags] == ["1.0.1"]
    assert current(repo, "best") == "1.0.1"
    # a resumed run compares against the stored best
    again = CheckpointCallback(repo, "m", every_n_steps=1, monitor="val_loss", best_ref="best")
    assert again.best_value() == pytest.approx(0.3)
    assert again.step(model(), step=10, metrics={"val_loss": 0.35}).best is False


def test_policy_refuses_to_promote_a_regression(repo):
    cb = CheckpointCallback(repo, "m", every_n_steps=1, monitor="val_loss", policy=POLICY,
                            promote_ref="current")
    acts = [
        cb.step(model(i), step=i + 1, metrics={"val_loss": x}).action
        for i, x in enumerate([0.5, 0.3, 0.9, 0.32])
    ]
    assert acts == ["promoted", "promoted", "refused-promotion", "promoted"]
    assert current(repo) == "1.0.3"


def test_policy_rolls_back_a_regression(repo):
    cb = CheckpointCallback(
        repo, "m", every_n_steps=2, policy=POLICY, on_regression="rollback", promote_ref="prod"
    )
    events = []
    for step, loss in zip(range(1, 7), [0.9, 0.5, 0.9, 0.3, 0.9, 0.8]):
        events.append(cb.step(model(step), step=step, metrics={"val_loss": loss}))
    committed = [e for e in events if e.committed]
    assert [e.action for e in committed] == ["promoted", "promoted", "rolled-back"]
    assert "val_loss 0.3 -> 0.8" in committed[-1].violations[0]
    assert current(repo, "prod") == "1.0.1"
    last = repo.refs.reflog("m", "prod")[-1]
    assert last.trigger == "metric-regression" and last.op == "rollback"


def test_non_finite_metrics_are_committed_but_never_promoted(repo):
    cb = CheckpointCallback(repo, "m", every_n_steps=1, monitor="val_loss", policy=POLICY,
                            promote_ref="current", best_ref="best")
    cb.step(model(), step=1, metrics={"val_loss": 0.5})
    ev = cb.step(model(), step=2, metrics={"val_loss": torch.tensor(float("nan"))})
    assert ev.committed and ev.action == "refused-promotion" and not ev.best
    assert current(repo) == "1.0.0" and current(repo, "best") == "1.0.0"


def test_saves_optimizer_and_scheduler_and_resumes(repo):
    net = model()
    opt = torch.optim.AdamW(net.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    cb = CheckpointCallback(repo, "m", every_n_steps=2, every_n_epochs=1, optimizer=opt,
                            scheduler=sched)
    assert cb.resume(net) is None  # a fresh run: nothing to resume
    for step in range(1, 5):
        net(torch.ones(1, 4)).sum().backward()
        opt.step()
        sched.step()
        cb.step(net, step=step, epoch=0 if step == 3 else None)  # step 3 ends epoch 0
    assert [v.manifest.extra["step"] for v in repo.versions("m")] == [2, 3, 4]
    fresh = model(seed=5)
    opt2 = torch.optim.AdamW(fresh.parameters(), lr=9.0)
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, step_size=1, gamma=0.5)
    again = CheckpointCallback(repo, "m", every_n_steps=2, optimizer=opt2, scheduler=sched2)
    assert again.resume(fresh) == 4 and again.resumed.epoch is None
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(),
                                                  net.state_dict().values()))
    assert opt2.state_dict()["param_groups"] == opt.state_dict()["param_groups"]
    assert sched2.state_dict() == sched.state_dict()
    assert again.step(fresh, step=4).committed is False  # the resumed step is not re-saved


def test_rejects_bad_options(repo):
    with pytest.raises(InvalidInputError):
        CheckpointCallback(repo, "m", every_n_steps=0)
    with pytest.raises(InvalidInputError):
        CheckpointCallback(repo, "m", mode="median")


def test_lightning_callback_needs_lightning(repo, monkeypatch):
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning"):
        monkeypatch.setitem(sys.modules, name, None)  # makes the import fail
    with pytest.raises(UnsupportedError, match="pip install lightning"):
        ct.lightning_callback(repo, "m", every_n_steps=1)


def test_lightning_callback_with_a_stand_in_lightning(repo, monkeypatch):
    fake = types.ModuleType("lightning.pytorch")
    fake.Callback = type("Callback", (), {})
    monkeypatch.setitem(sys.modules, "lightning.pytorch", fake)
    cb = ct.lightning_callback(repo, "m", every_n_steps=2, every_n_epochs=1)
    trainer = types.SimpleNamespace(
        is_global_zero=True, global_step=0, current_epoch=0, callback_metrics={}
    )
    net = model()
    for step in (1, 2, 3, 4):
        trainer.global_step = step
        trainer.callback_metrics = {"loss": torch.tensor(1.0 / step), "note": "text"}
        cb.on_train_batch_end(trainer, net, None, None, step - 1)
    cb.on_train_epoch_end(trainer, net)
    versions = repo.versions("m")
    assert [v.manifest.extra["step"] for v in versions] == [2, 4, None]
    assert versions[0].metrics == {"loss": 0.5}
    assert versions[-1].manifest.extra["epoch"] == 0
