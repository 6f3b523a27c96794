"""The trust policy's signed bytes: policies stored by earlier versions (pydantic models) still
verify, and a policy encodes to the same bytes it did then; a malformed policy fails closed.

``tests/fixtures/trust_v1`` holds the chain ``trust/000000000000``, ``trust/000000000001`` as
commit aaa7688 (pydantic) stored it: the first policy signed by its own ``admin`` key, the
second by ``admin`` (policy 0 trusts it), created by actor ``José ☃ <jose@example.com>``. It is
never regenerated.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pytest

from casstore import Repository
from casstore.errors import InvalidInputError, UntrustedError
from casstore.ops.signing import PrivateKey
from casstore.ops.trust import Rule, TrustedKey, TrustGate, TrustPolicy, make_rule
from casstore.repo.keys import trust_key
from tests.keys import key_pair

FIXTURE = Path(__file__).parent.parent / "fixtures" / "trust_v1"
PEM = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"


def _payload(raw: bytes) -> bytes:
    return base64.b64decode(json.loads(raw)["payload"])


def test_a_chain_stored_before_verifies_and_encodes_to_its_signed_bytes(tmp_path: Path):
    repo = Repository(str(tmp_path / "store"))
    repo.init()
    raws = [(FIXTURE / f"{serial:012d}").read_bytes() for serial in range(2)]
    for serial, raw in enumerate(raws):
        repo.store.put(trust_key(serial), raw)
    policy = repo.trust_policy()  # checks both signatures and the hash chain
    assert policy is not None and policy.serial == 1
    assert policy.created_by == "José ☃ <jose@example.com>"
    assert policy.rule_for("m", "production") == Rule(model="m", ref="production", signatures=2,
                                                        keys=("admin", "ci"))
    assert [k.name for k in policy.keys] == ["admin", "ci"]
    for raw in raws:  # decoding and encoding again gives the very bytes that were signed
        assert TrustPolicy.from_payload(_payload(raw)).payload() == _payload(raw)
    admin_id = policy.key_named("admin").public.keyid
    assert TrustGate(repo.ctx, anchors=[admin_id]).refusal("x", "y", []) == ""


def test_payload_bytes_are_those_pydantic_wrote():
    """Literals from commit aaa7688's ``TrustPolicy.model_dump_json()``."""
    policy = TrustPolicy(
        serial=3, previous="ab" * 32,
        keys=(TrustedKey(name="admin", pem=PEM), TrustedKey(name="ci", pem=PEM)),
        rules=(make_rule("m:production", 2, ["admin", "ci"]), make_rule("canary")),
        created_at=dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc),
        created_by="bob ☃ <b@x>",
    )
    assert policy.payload() == (
        '{"format_version":1,"serial":3,"previous":"' + "ab" * 32 + '","keys":[{"name":"admin",'
        '"pem":"-----BEGIN PUBLIC KEY-----\\nMFkw\\n-----END PUBLIC KEY-----\\n"},{"name":"ci",'
        '"pem":"-----BEGIN PUBLIC KEY-----\\nMFkw\\n-----END PUBLIC KEY-----\\n"}],"rules":[{'
        '"model":"m","ref":"production","signatures":2,"keys":["admin","ci"]},{"model":"*",'
        '"ref":"canary","signatures":1,"keys":[]}],"created_at":"2024-05-06T07:08:09.123456Z",'
        '"created_by":"bob ☃ <b@x>"}'
    ).encode()
    first = TrustPolicy(serial=0, keys=(TrustedKey(name="a", pem=PEM),),
                        created_at=dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc))
    assert first.payload() == (
        b'{"format_version":1,"serial":0,"previous":"","keys":[{"name":"a","pem":"-----BEGIN '
        b'PUBLIC KEY-----\\nMFkw\\n-----END PUBLIC KEY-----\\n"}],"rules":[],"created_at":'
        b'"2024-05-06T07:08:09Z","created_by":""}'
    )
    assert policy.to_builtins()["created_at"] == "2024-05-06T07:08:09.123456Z"


@pytest.mark.parametrize("change, says", [
    ({"extra": 1}, "unknown field `extra`"),
    ({"serial": "0"}, "Expected `int`, got `str` - at `$.serial`"),
    ({"serial": -1}, "Expected `int` >= 0 - at `$.serial`"),
    ({"rules": [{"ref": "x", "signatures": 0}]},
     "Expected `int` >= 1 - at `$.rules[0].signatures`"),
    ({"keys": [{"name": "a"}]}, "missing required field `pem` - at `$.keys[0]`"),
    ({"created_at": "yesterday"}, "Invalid RFC3339 encoded datetime - at `$.created_at`"),
])
def test_a_malformed_policy_object_fails_closed(tmp_path: Path, change: dict, says: str):
    doc = {"format_version": 1, "serial": 0, "previous": "", "keys": [{"name": "a", "pem": PEM}],
           "rules": [], "created_at": "2024-05-06T07:08:09Z", "created_by": ""} | change
    env = {"payloadType": "x", "payload": base64.b64encode(json.dumps(doc).encode()).decode(),
           "signatures": []}
    repo = Repository(str(tmp_path / "store"))
    repo.init()
    repo.store.put(trust_key(0), json.dumps(env).encode())
    with pytest.raises(UntrustedError, match="trust policy 0 is unreadable") as e:
        repo.trust_policy()
    assert says in str(e.value)
    assert "unreadable" in TrustGate(repo.ctx).refusal("m", "production", [])


def test_a_rule_the_readers_would_refuse_is_never_stored(tmp_path: Path):
    admin, admin_pub = key_pair(tmp_path / "keys", "admin")
    with pytest.raises(InvalidInputError, match=r"bad rule 'x'.*>= 1"):
        make_rule("x", signatures=0)
    repo = Repository(str(tmp_path / "store"))
    repo.init()
    bad = Rule(ref="x", signatures=0)  # construction does not check; storing does
    with pytest.raises(InvalidInputError, match=r"invalid trust policy.*rules\[0\].signatures"):
        repo.set_trust_policy([("admin", admin_pub.read_bytes())], [bad],
                              PrivateKey.from_pem(admin.read_bytes()), force_init=True)
    assert list(repo.store.list("trust/")) == []
