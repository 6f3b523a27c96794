"""``casstore sign / verify-signature / trust`` and ``checkout --with-signature``, run as the
command line, with the real ``model_signing`` CLI checking the checked-out folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from casstore import Repository
from tests import series
from tests.cli_helpers import run
from tests.keys import key_pair


@pytest.fixture
def world(tmp_path: Path) -> dict:
    store = str(tmp_path / "store")
    base = series.tensors(n=3, size=4096)
    for i, t in enumerate([base, series.finetune(base), series.finetune(base, seed=2)]):
        f = series.save(tmp_path / "in" / f"v{i}" / "model.safetensors", t)
        assert run("commit", "m", f, "--tag", "stable", store=store).code == 0
    admin, admin_pub = key_pair(tmp_path / "keys", "admin")
    ci, ci_pub = key_pair(tmp_path / "keys", "ci")
    return {"store": store, "admin": admin, "admin_pub": admin_pub, "ci": ci, "ci_pub": ci_pub,
            "tmp": tmp_path}


def test_sign_checkout_and_model_signing_verify(world: dict):
    pytest.importorskip("model_signing")
    store, tmp = world["store"], world["tmp"]
    r = run("sign", "m", "1.0.0", "--key", world["admin"], store=store)
    assert r.code == 0 and r.out.startswith("signed m 1.0.0 with key "), r.err
    # the key may come from the environment instead of a file
    env = {"CASSTORE_SIGNING_KEY": world["ci"].read_text()}
    assert run("sign", "m", "1.0.0", "--json", store=store, env=env).code == 0
    r = run("show", "m", "1.0.0", "--json", store=store)
    assert [s["valid"] for s in r.json()["signatures"]] == [False, False]  # no policy yet
    r = run("verify-signature", "m", "1.0.0", "--trusted-key", world["admin_pub"],
            "--trusted-key", world["ci_pub"], "--read-data", store=store)
    assert r.code == 0 and "2 valid signature(s)" in r.out, r.out + r.err
    r = run("verify-signature", "m", "1.0.1", "--trusted-key", world["admin_pub"], store=store)
    assert r.code == 1 and "no valid signature from a trusted key" in r.out
    out = tmp / "out"
    r = run("checkout", "m", "1.0.0", "-o", out, "--with-signature", store=store)
    assert r.code == 0 and sorted(p.name for p in out.iterdir()) == [
        "model.safetensors", "model.sig"
    ]
    verify = [sys.executable, "-m", "model_signing", "verify", "key", "--signature",
              str(out / "model.sig"), str(out)]
    ok = subprocess.run([*verify[:5], "--public_key", str(world["ci_pub"]), *verify[5:]],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr  # the newest signature: the ci key's
    f = out / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x80
    f.write_bytes(bytes(data))
    bad = subprocess.run([*verify[:5], "--public_key", str(world["ci_pub"]), *verify[5:]],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "Hash mismatch" in bad.stderr
    # the signature travels in a file too, and checkout can pick the signer
    keyid = run("sign", "m", "1.0.0", "--key", world["admin"], "--json", "-o", tmp / "a.sig",
                store=store).json()["signature"]["keyid"]
    r = run("checkout", "m", "1.0.0", "-o", tmp / "out2", f"--with-signature={keyid[:12]}",
            store=store)
    assert r.code == 0
    assert (tmp / "out2" / "model.sig").read_bytes() == (tmp / "a.sig").read_bytes()


def test_trust_policy_and_refused_moves(world: dict):
    store = world["store"]
    assert run("promote", "m", "1.0.0", "--ref", "production", store=store).code == 0  # no policy
    trust = ["trust", "set", "--trusted-key", f"admin={world['admin_pub']}",
             "--require", "production"]
    r = run(*trust, "--key", world["admin"], store=store)
    assert r.code == 2 and "--force-init" in r.err
    r = run(*trust, "--key", world["admin"], "--force-init", store=store)
    assert r.code == 0 and "trust policy 0" in r.out and "production" in r.out, r.err
    r = run(*trust, "--key", world["ci"], store=store)  # ci is not trusted (yet)
    assert r.code == 1 and "not trusted by the current policy" in r.err
    r = run(*trust, "--trusted-key", f"ci={world['ci_pub']}", "--key", world["admin"],
            store=store)
    assert r.code == 0 and "trust policy 1" in r.out
    doc = run("trust", "show", "--json", store=store).json()["policy"]
    assert [k["name"] for k in doc["keys"]] == ["admin", "ci"] and doc["serial"] == 1

    assert run("sign", "m", "1.0.1", "--key", world["ci"], store=store).code == 0
    r = run("promote", "m", "1.0.0", "--ref", "production", store=store)
    assert r.code == 1 and r.out.startswith("FAILED: refused: m 1.0.0 has 0 valid signature")
    assert run("promote", "m", "1.0.1", "--ref", "production", store=store).code == 0
    r = run("rollback", "m", "--ref", "production", "--previous-stable", store=store)  # 1.0.0
    assert r.code == 1 and "refused" in r.out and "requires 1" in r.out
    r = run("rollback", "m", "--ref", "production", "--to", "1.0.2", "--steps", "10,100",
            store=store)
    assert r.code == 1 and "1.0.2 has 0 valid signature" in r.out
    r = run("show", "m", "1.0.1", store=store)
    assert "ci" in r.out and "valid" in r.out
    assert run("verify-signature", "m", "@production", store=store).code == 0  # policy keys
    assert run("refs", "m", "--json", store=store).json()["refs"]["production"]["describe"] == (
        "1.0.1"
    )
    # a commit straight onto a guarded ref stores the version but leaves the ref alone
    f = series.save(world["tmp"] / "in" / "v9" / "model.safetensors", series.tensors(seed=9))
    r = run("commit", "m", f, "--ref", "production", store=store)
    assert r.code == 1 and "committed m_v1.0.3" in r.err and "production did not move" in r.err
    assert run("show", "m", "1.0.3", store=store).code == 0
    assert run("refs", "m", "--json", store=store).json()["refs"]["production"]["describe"] == (
        "1.0.1"
    )


def test_bad_signing_input(world: dict, tmp_path: Path):
    store = world["store"]
    r = run("sign", "m", "1.0.0", store=store)
    assert r.code == 2 and "no signing key" in r.err
    (tmp_path / "junk.pem").write_text("junk")
    r = run("sign", "m", "1.0.0", "--key", tmp_path / "junk.pem", store=store)
    assert r.code == 2 and "private key" in r.err
    r = run("verify-signature", "m", "1.0.0", store=store)
    assert r.code == 2 and "no trust policy" in r.err
    r = run("trust", "set", "--trusted-key", "nameless", "--key", world["admin"],
            "--force-init", store=store)
    assert r.code == 2 and "NAME=PUB.pem" in r.err
    assert run("trust", "show", store=store).out.startswith("no trust policy")
    # a damaged policy object: every guarded command fails closed, show still shows
    Repository(store).store.put("trust/000000000000", b"garbage")
    r = run("promote", "m", "1.0.1", store=store)
    assert r.code == 1 and "trust policy 0 is unreadable" in r.out
    r = run("show", "m", "1.0.0", store=store)
    assert r.code == 0 and "trust policy: trust policy 0 is unreadable" in r.out
    assert run("trust", "show", store=store).code == 1


def test_trust_anchors_pin_the_first_policy(world: dict, tmp_path: Path):
    store = world["store"]
    set_policy = ["trust", "set", "--require", "production", "--force-init"]
    r = run(*set_policy, "--trusted-key", f"admin={world['admin_pub']}", "--key",
            world["admin"], "--json", store=store)
    admin_id = r.json()["policy"]["keys"][0]["keyid"]
    env = {"CASSTORE_TRUST_ANCHORS": admin_id}
    assert run("trust", "show", store=store, env=env).code == 0
    # someone with bucket access replaces the whole chain with a policy of their own
    thief, thief_pub = key_pair(tmp_path / "keys", "thief")
    Repository(store).store.delete("trust/000000000000")
    r = run(*set_policy[:2], "--trusted-key", f"me={thief_pub}", "--key", thief, "--force-init",
            store=store)
    assert r.code == 0
    assert run("sign", "m", "1.0.1", "--key", thief, store=store).code == 0
    r = run("promote", "m", "1.0.1", "--ref", "production", store=store, env=env)
    assert r.code == 1 and "not rooted in an anchor key" in r.out
    assert run("trust", "show", store=store, env=env).code == 1
    r = run("trust", "show", store=store, env={"CASSTORE_TRUST_ANCHORS": "nope"})
    assert r.code == 2 and "invalid key id" in r.err
