"""A follower serves only what the trust policy allows: a ref an intruder moved (bucket access,
no key) to an unsigned version is refused, the signed one keeps serving, ``status`` says why."""

from __future__ import annotations

from pathlib import Path

import pytest

from casstore import Repository
from casstore.ops.trust import make_rule
from casstore.repo.refs import RefValue
from casstore.serving import Follower
from tests.cli_helpers import run
from tests.keys import key_pair

torch = pytest.importorskip("torch")

import casstore.torch as ct  # noqa: E402


def _weights(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {f"layer{i}.weight": torch.randn(4096, generator=g) for i in range(3)}


def _signed_production(tmp_path: Path) -> tuple[str, Repository, Path]:
    """Two versions; policy: production needs the admin's signature; 1.0.0 signed and live."""
    store = str(tmp_path / "s")
    admin, admin_pub = key_pair(tmp_path / "keys", "admin")
    ct.save(_weights(1), store, "m")
    ct.save(_weights(2), store, "m")
    repo = Repository(store)
    repo.set_trust_policy([("admin", admin_pub.read_bytes())], [make_rule("production")],
                          admin.read_bytes(), force_init=True)
    repo.sign("m", "1.0.0", admin.read_bytes())
    assert repo.promote("m", "1.0.0", ref="production").ok
    return store, repo, admin


def test_intruder_ref_move_is_not_served(tmp_path: Path):
    store, repo, admin = _signed_production(tmp_path)
    f = Follower(store, "m", "production", interval=60, follower_id="f1")
    assert f.poll() and f.model_for().version.version == "1.0.0"

    # the intruder writes the ref object straight into the store, past every casstore check
    intruder = Repository(store)
    rec, _ = intruder.refs.read("m", "production")
    intruder.refs.move("m", "production", RefValue.of(intruder.get_version("m", "1.0.1").target),
                       expected_seq=rec.seq, reason="totally legit", trigger="user", op="promote")
    assert not f.poll()
    served = f.model_for()
    assert served.version.version == "1.0.0"
    assert torch.equal(served.state_dict["layer0.weight"], _weights(1)["layer0.weight"])

    r = run("status", "m", "--ref", "production", "--json", store=store)
    [ack] = r.json()["followers"]
    assert ack["versions"] == ["1.0.0"] and not ack["on_target"] and ack["state"] == "failed"
    assert ack["failed_version"] == "1.0.1"
    assert "refused: m 1.0.1 has 0 valid signature(s) from trusted keys" in ack["last_error"]
    text = run("status", "m", "--ref", "production", store=store).out
    assert "production -> 1.0.1" in text and "NO" in text and "refused" in text

    # rolling back to the unsigned version is refused, with the reason
    r = run("rollback", "m", "--ref", "production", "--to", "1.0.1", store=store)
    assert r.code == 1
    assert r.out.startswith("FAILED: refused: m 1.0.1 has 0 valid signature(s)"), r.out
    # rolling back to the signed one works, and the follower is on target again
    r = run("rollback", "m", "--ref", "production", "--to", "1.0.0", store=store)
    assert r.code == 0, r.out + r.err
    assert f.poll() and f.model_for().version.version == "1.0.0"
    [ack] = run("status", "m", "--ref", "production", "--json", store=store).json()["followers"]
    assert ack["on_target"] and ack["state"] == "ok"

    # once the version is signed, a ref move to it is served
    repo.sign("m", "1.0.1", admin.read_bytes())
    assert repo.promote("m", "1.0.1", ref="production").ok
    assert f.poll() and f.model_for().version.version == "1.0.1"
    f.stop()


def test_follower_refuses_a_replaced_trust_policy(tmp_path: Path):
    store, repo, _ = _signed_production(tmp_path)
    thief, thief_pub = key_pair(tmp_path / "keys", "thief")
    f = Follower(store, "m", "production", interval=60)
    assert f.poll()
    # the intruder deletes the policy, writes one trusting their key, signs and moves the ref
    intruder = Repository(store)  # a process that never saw the old policy
    intruder.store.delete("trust/000000000000")
    intruder.set_trust_policy([("me", thief_pub.read_bytes())], [], thief.read_bytes(),
                              force_init=True)
    intruder.sign("m", "1.0.1", thief.read_bytes())
    assert intruder.promote("m", "1.0.1", ref="production").ok
    assert not repo.promote("m", "1.0.1", ref="production").ok  # this process remembers
    assert not f.poll()
    assert f.model_for().version.version == "1.0.0"
    assert "removed or replaced" in f.ack.last_error
