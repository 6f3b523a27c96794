"""Signed versions: model-signing compatible bundles (checked by the real ``model_signing``
CLI), signatures bound to one manifest, the signed trust-policy chain, and refs that refuse
unsigned versions on every move path."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from casstore import Repository
from casstore.errors import AlreadyExistsError, InvalidInputError, UntrustedError
from casstore.ops.signing import PrivateKey, check_signatures, load_public_keys, seal
from casstore.ops.trust import POLICY_PAYLOAD_TYPE, TrustGate, make_rule
from casstore.repo.keys import signature_key, signatures_prefix, trust_key
from casstore.testing.stores import CountingStore
from tests import series
from tests.keys import key_pair


def _model_dir(root: Path, seed: int = 0) -> Path:
    """A folder whose paths sort differently as strings and as path parts (a.txt vs a/...)."""
    d = root / f"model-{seed}"
    series.save(d / "a" / "model.safetensors", series.tensors(n=3, size=8192, seed=seed))
    (d / "a.txt").write_text(f"config {seed}\n")
    (d / "z.json").write_text(json.dumps({"seed": seed}))
    return d


def _model_signing_verify(folder: Path, pub: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "model_signing", "verify", "key", "--public_key", str(pub),
         "--signature", str(folder / "model.sig"), str(folder)],
        capture_output=True, text=True, timeout=120,
    )


def test_model_signing_cli_verifies_a_checkout(tmp_path: Path):
    pytest.importorskip("model_signing")
    priv, pub = key_pair(tmp_path / "keys", "release")
    repo = Repository(str(tmp_path / "store"))
    repo.commit("m", [_model_dir(tmp_path)])
    info, bundle = repo.sign("m", "1.0.0", priv.read_bytes())
    assert info.ok and info.keyid in bundle.decode()
    out = tmp_path / "out"
    files = repo.checkout("m", "1.0.0", out, with_signature=True)
    assert sorted(p.relative_to(out).as_posix() for p in files) == [
        "a.txt", "a/model.safetensors", "model.sig", "z.json"
    ]
    ok = _model_signing_verify(out, pub)
    assert ok.returncode == 0 and "Verification succeeded" in ok.stdout, ok.stderr
    # one changed byte in one file: the standard tool refuses the folder
    target = out / "a" / "model.safetensors"
    data = bytearray(target.read_bytes())
    data[-1] ^= 1
    target.write_bytes(bytes(data))
    bad = _model_signing_verify(out, pub)
    assert bad.returncode != 0 and "Hash mismatch for" in bad.stderr
    assert "a/model.safetensors" in bad.stderr
    # and another key's public half does not verify the untouched signature
    _, other = key_pair(tmp_path / "keys", "other")
    repo.checkout("m", "1.0.0", tmp_path / "out2", with_signature=True)
    assert _model_signing_verify(tmp_path / "out2", other).returncode != 0


def test_signatures_bind_to_one_manifest(tmp_path: Path):
    a_priv, a_pub = key_pair(tmp_path / "keys", "a")
    b_priv, b_pub = key_pair(tmp_path / "keys", "b")
    repo = Repository(str(tmp_path / "store"))
    repo.commit("m", [_model_dir(tmp_path, 0)])
    repo.commit("m", [_model_dir(tmp_path, 1)])
    a, _ = repo.sign("m", "1.0.0", a_priv.read_bytes())
    b, _ = repo.sign("m", "1.0.0", b_priv.read_bytes(), signer="release-manager")
    trusted = [a_pub.read_bytes(), b_pub.read_bytes()]
    sigs = repo.signatures("m", "1.0.0", trusted, read_data=True)
    assert [s.ok for s in sigs] == [True, True] and len({s.keyid for s in sigs}) == 2
    assert {s.signer for s in sigs} >= {"release-manager"}
    # only key a trusted: b's signature is listed as untrusted
    sigs = repo.signatures("m", "1.0.0", [a_pub.read_bytes()])
    assert sorted(s.problem for s in sigs) == ["", "untrusted key"]
    # an intruder copies 1.0.0's signature onto 1.0.1: it names another manifest
    raw = repo.store.get(signature_key("m", "1.0.0", a.keyid))
    repo.store.put(signature_key("m", "1.0.1", a.keyid), raw)
    [s] = repo.signatures("m", "1.0.1", trusted)
    assert not s.ok and "not this version" in s.problem
    # a flipped byte in the signed payload breaks the DSSE signature
    doc = json.loads(raw)
    payload = bytearray(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    payload[payload.index(b"sha256")] ^= 0x20
    doc["dsseEnvelope"]["payload"] = base64.b64encode(bytes(payload)).decode()
    repo.store.put(signature_key("m", "1.0.0", a.keyid), json.dumps(doc).encode())
    sigs = {s.keyid: s for s in repo.signatures("m", "1.0.0", trusted)}
    assert "does not verify" in sigs[a.keyid].problem and sigs[b.keyid].ok


def test_checking_signatures_costs_o1_requests(tmp_path: Path):
    priv, pub = key_pair(tmp_path / "keys", "a")
    counting = CountingStore(Repository(str(tmp_path / "store")).store)
    repo = Repository(counting)
    for i in range(6):
        repo.commit("m", [_model_dir(tmp_path, i)])
        repo.sign("m", "latest", priv.read_bytes())
    v = repo.get_version("m", "1.0.5")
    counting.reset()
    [s] = check_signatures(repo.ctx, "m", "1.0.5", v.id.hex(), load_public_keys([pub.read_bytes()]))
    assert s.ok
    assert counting.requests <= 2, counting.counts  # one listing, one read


def test_bad_keys_are_invalid_input(tmp_path: Path):
    repo = Repository(str(tmp_path / "store"))
    repo.commit("m", [_model_dir(tmp_path)])
    rsa = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.rsa")
    from cryptography.hazmat.primitives import serialization

    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
    for bad in (b"", b"not a key", pem):
        with pytest.raises(InvalidInputError):
            repo.sign("m", "1.0.0", bad)
    assert list(repo.store.list(signatures_prefix("m", "1.0.0"))) == []


# -- the trust policy ------------------------------------------------------------------------
def test_trust_policy_chain(tmp_path: Path):
    admin, admin_pub = key_pair(tmp_path / "keys", "admin")
    ci, ci_pub = key_pair(tmp_path / "keys", "ci")
    intruder, intruder_pub = key_pair(tmp_path / "keys", "intruder")
    repo = Repository(str(tmp_path / "store"))
    keys = [("admin", admin_pub.read_bytes()), ("ci", ci_pub.read_bytes())]
    rules = [make_rule("production")]
    with pytest.raises(InvalidInputError, match="force-init"):
        repo.set_trust_policy(keys, rules, admin.read_bytes())
    with pytest.raises(InvalidInputError, match="one of its own keys"):
        repo.set_trust_policy(keys, rules, intruder.read_bytes(), force_init=True)
    assert repo.trust_policy() is None and list(repo.store.list("trust/")) == []
    p0 = repo.set_trust_policy(keys, rules, admin.read_bytes(), force_init=True)
    assert repo.trust_policy() == p0 and p0.rule_for("m", "production").signatures == 1
    assert p0.rule_for("m", "current") is None
    with pytest.raises(InvalidInputError, match="exists"):
        repo.set_trust_policy(keys, [], admin.read_bytes(), force_init=True)
    # a change signed by an untrusted key is refused and stores nothing
    with pytest.raises(UntrustedError, match="not trusted"):
        repo.set_trust_policy([("x", intruder_pub.read_bytes())], [], intruder.read_bytes())
    assert len(list(repo.store.list("trust/"))) == 1
    # the ci key (trusted by policy 0) may change it
    p1 = repo.set_trust_policy(keys, [make_rule("m:*", signatures=2)], ci.read_bytes())
    assert repo.trust_policy() == p1 and p1.serial == 1
    assert p1.rule_for("m", "anything").signatures == 2 and p1.rule_for("n", "x") is None
    # an intruder appends a policy signed by their own key: the chain is broken, fail closed
    gate = TrustGate(repo.ctx)
    assert gate.refusal("m", "current", []) == ""  # reads and remembers the chain
    forged = p1.replace(serial=2, rules=())
    env = seal(POLICY_PAYLOAD_TYPE, forged.payload(), PrivateKey.from_pem(intruder.read_bytes()))
    repo.store.put(trust_key(2), json.dumps(env).encode())
    with pytest.raises(UntrustedError, match="policy 2 is not signed"):
        repo.trust_policy()
    assert "not signed" in gate.refusal("other", "current", [])
    # ... and replacing the whole chain with their own is noticed by a gate that saw it
    for i in range(3):
        repo.store.delete(trust_key(i))
    intruder_repo = Repository(repo.store)
    intruder_repo.set_trust_policy([("me", intruder_pub.read_bytes())], [],
                                   intruder.read_bytes(), force_init=True)
    assert "removed or replaced" in gate.refusal("m", "current", [])
    anchored = TrustGate(repo.ctx, anchors=[PrivateKey.from_pem(admin.read_bytes()).public.keyid])
    assert "anchor" in anchored.refusal("m", "current", [])
    assert TrustGate(repo.ctx).refusal("m", "current", []) == ""  # a fresh, unanchored gate


def test_concurrent_policy_change_loses_cleanly(tmp_path: Path):
    admin, admin_pub = key_pair(tmp_path / "keys", "admin")
    keys = [("admin", admin_pub.read_bytes())]
    url = str(tmp_path / "store")
    Repository(url).set_trust_policy(keys, [], admin.read_bytes(), force_init=True)

    class RacingStore(CountingStore):
        """Another admin's change lands between our read of the chain and our write."""

        def put_if_absent(self, key, data, *, sync=True):
            if key == trust_key(1):
                Repository(url).set_trust_policy(keys, [make_rule("x")], admin.read_bytes())
            return super().put_if_absent(key, data, sync=sync)

    repo = Repository(RacingStore(Repository(url).store))
    with pytest.raises(AlreadyExistsError, match="concurrently"):
        repo.set_trust_policy(keys, [], admin.read_bytes())
    assert repo.trust_policy().rules == (make_rule("x"),)  # the winner's policy, intact


# -- refs refuse unsigned versions -----------------------------------------------------------
@pytest.fixture
def signed_world(tmp_path: Path, store_url: str) -> dict:
    admin, admin_pub = key_pair(tmp_path / "keys", "admin")
    repo = Repository(store_url)
    for i in range(4):
        repo.commit("m", [_model_dir(tmp_path, i)], tags=["stable"])
    repo.promote("m", "1.0.0", ref="production")
    repo.promote("m", "1.0.1", ref="release")
    repo.promote("m", "1.0.1", ref="canary")
    repo.start_split("m", "1.0.3", ref="canary", steps=(0.1, 0.5, 1.0))  # before the policy
    repo.set_trust_policy([("admin", admin_pub.read_bytes())],
                          [make_rule("production"), make_rule("canary"), make_rule("release")],
                          admin.read_bytes(), force_init=True)
    for v in ("1.0.0", "1.0.2"):
        repo.sign("m", v, admin.read_bytes())
    return {"repo": repo, "admin": admin}


def test_every_move_path_refuses_unsigned(signed_world: dict):
    repo: Repository = signed_world["repo"]
    before = {r: repo.refs.get("m", r) for r in ("production", "canary")}
    res = repo.promote("m", "1.0.1", ref="production")
    assert not res.ok and "refused" in res.message and "1.0.1 has 0 valid signature" in res.message
    res = repo.rollback("m", to="1.0.3", ref="production")
    assert not res.ok and "requires 1" in res.message
    res = repo.start_split("m", "1.0.3", ref="production", steps=(0.1, 1.0))
    assert not res.ok and "refused" in res.message
    with pytest.raises(UntrustedError, match="refused"):
        repo.advance("m", ref="canary")
    with pytest.raises(UntrustedError, match=r"1\.0\.1 has 0 valid"):
        repo.abort("m", ref="canary")  # back to the split's unsigned base
    assert {r: repo.refs.get("m", r) for r in ("production", "canary")} == before
    # signed targets move; refs without a rule are free
    assert repo.promote("m", "1.0.2", ref="production").ok
    assert repo.rollback("m", to="1.0.0", ref="production").ok
    assert repo.promote("m", "1.0.2", ref="release").ok
    res = repo.rollback("m", ref="release")  # quick: what it served before, 1.0.1, is unsigned
    assert not res.ok and "1.0.1 has 0 valid" in res.message
    assert repo.refs.get("m", "release").target.version == "1.0.2"
    assert repo.promote("m", "1.0.3").ok  # `current`: no rule
    assert repo.refs.reflog("m", "production")[-1].op == "rollback"


def test_refused_auto_revert_is_reported(tmp_path: Path):
    admin, admin_pub = key_pair(tmp_path / "keys", "admin")
    repo = Repository(str(tmp_path / "store"))
    repo.commit("m", [_model_dir(tmp_path, 0)], ref="production")  # unsigned, before the policy
    repo.commit("m", [_model_dir(tmp_path, 1)])
    repo.set_trust_policy([("admin", admin_pub.read_bytes())], [make_rule("production")],
                          admin.read_bytes(), force_init=True)
    repo.sign("m", "1.0.1", admin.read_bytes())
    res = repo.promote("m", "1.0.1", ref="production", health_check=lambda v: False)
    assert not res.ok and "the revert was refused" in res.message
    assert repo.refs.get("m", "production").target.version == "1.0.1"


def test_push_carries_signatures(tmp_path: Path):
    admin, admin_pub = key_pair(tmp_path / "keys", "admin")
    src, dst = Repository(str(tmp_path / "a")), Repository(str(tmp_path / "b"))
    src.commit("m", [_model_dir(tmp_path, 0)], ref="production")
    src.sign("m", "1.0.0", admin.read_bytes())
    dst.init()
    dst.set_trust_policy([("admin", admin_pub.read_bytes())], [make_rule("production")],
                         admin.read_bytes(), force_init=True)
    src.push(dst, [src.get_version("m", "1.0.0")], refs=["production"])
    assert dst.refs.get("m", "production").target.version == "1.0.0"
    assert [s.ok for s in dst.signatures("m", "1.0.0")] == [True]


def test_a_push_finds_the_signatures_of_its_versions_in_one_listing(tmp_path: Path):
    """Several versions of a model: one listing of the model's signatures (not one per
    version), and exactly the pushed versions' signatures land; one version: its own."""
    from casstore.store import open_store

    admin, _ = key_pair(tmp_path / "keys", "admin")
    other, _ = key_pair(tmp_path / "keys", "other")
    src = Repository(CountingStore(open_store(str(tmp_path / "a"))))
    for i in range(4):
        src.commit("m", [_model_dir(tmp_path, i)])
    src.sign("m", "1.0.0", admin.read_bytes())
    src.sign("m", "1.0.0", other.read_bytes())
    src.sign("m", "1.0.2", admin.read_bytes())
    src.sign("m", "1.0.3", admin.read_bytes())  # not pushed: stays behind
    counting = src.store
    assert isinstance(counting, CountingStore)
    for dst, pushed, lists in ((Repository(str(tmp_path / "b")), ["1.0.0", "1.0.1", "1.0.2"], 1),
                               (Repository(str(tmp_path / "c")), ["1.0.3"], 1)):
        counting.reset()
        src.push(dst, [src.get_version("m", v) for v in pushed])
        assert counting.counts()["list"].requests == lists
        held = {v: len(list(dst.store.list(signatures_prefix("m", v))))
                for v in ("1.0.0", "1.0.1", "1.0.2", "1.0.3")}
        expected = {"1.0.0": 2, "1.0.1": 0, "1.0.2": 1, "1.0.3": 1}
        assert held == {v: expected[v] if v in pushed else 0 for v in held}
        for v in pushed:  # the very bundles
            keys = [i.key for i in counting.inner.list(signatures_prefix("m", v))]
            assert {k: dst.store.get(k) for k in keys} == {k: counting.inner.get(k) for k in keys}


def test_gc_drops_the_signatures_of_expired_versions(tmp_path: Path):
    from casstore import RetentionPolicy

    priv, _ = key_pair(tmp_path / "keys", "a")
    repo = Repository(str(tmp_path / "store"))
    for i in range(3):
        repo.commit("m", [_model_dir(tmp_path, i)], ref="current")
        repo.sign("m", "latest", priv.read_bytes())
    repo.gc(RetentionPolicy(keep_last=1, keep_reflog_seconds=0), grace_seconds=0)
    assert [v.version for v in repo.versions("m")] == ["1.0.2"]
    for gone in ("1.0.0", "1.0.1"):
        assert list(repo.store.list(signatures_prefix("m", gone))) == []
    assert len(list(repo.store.list(signatures_prefix("m", "1.0.2")))) == 1
