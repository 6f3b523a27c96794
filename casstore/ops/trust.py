"""The store's trust policy: which public keys are trusted and which refs require signatures.

The policy lives in the store as a chain ``trust/<serial>`` of DSSE envelopes, each created
once (create-if-absent) and signed by a key the *previous* policy trusts; the first one
(``force_init`` on an empty store) is signed by one of its own keys. So a writer with bucket
access but no trusted private key cannot change the policy without breaking the chain, and a
broken chain refuses every guarded move (fail closed). Someone who can delete objects could
replace the whole chain; a :class:`TrustGate` therefore remembers every policy it has seen (a
follower keeps one for its lifetime) and refuses a chain that does not extend it, and
``anchors`` pin the keys the first policy must be signed by.

:class:`TrustGate` is the one check every ref move (``Rollout.move``) and every follower swap
calls: O(policy changes) requests to read the chain, then one listing and a few small reads
per version for its signatures.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import msgspec

from casstore.errors import AlreadyExistsError, InvalidInputError, UntrustedError
from casstore.records import Meta, Record, ValidationError
from casstore.repo.context import StoreContext
from casstore.repo.keys import (
    TRUST,
    check_keyid,
    check_name,
    serial_from_trust_key,
    trust_key,
)

if TYPE_CHECKING:  # signing code loads only where a policy exists or is written
    from casstore.ops.signing import PrivateKey, PublicKey

POLICY_PAYLOAD_TYPE = "application/vnd.casstore.trust-policy+json"


class TrustedKey(Record, kw_only=True):
    """A public key the policy trusts, under a human name."""

    name: str
    pem: str

    @property
    def public(self) -> PublicKey:
        from casstore.ops.signing import PublicKey

        return PublicKey.from_pem(self.pem)


class Rule(Record, kw_only=True):
    """``model``/``ref`` (``*`` for any) require ``signatures`` valid signatures, each by a
    different trusted key (by one of ``keys``, their names, when given)."""

    model: str = "*"
    ref: str = "*"
    signatures: Annotated[int, Meta(ge=1)] = 1
    keys: tuple[str, ...] = ()

    def matches(self, model: str, ref: str) -> bool:
        return self.model in ("*", model) and self.ref in ("*", ref)


class TrustPolicy(Record, kw_only=True):
    format_version: int = 1
    serial: Annotated[int, Meta(ge=0)]
    previous: str = ""  # SHA-256 of the previous policy object's bytes ("" for the first)
    keys: tuple[TrustedKey, ...]
    rules: tuple[Rule, ...] = ()
    created_at: dt.datetime
    created_by: str = ""

    def key_named(self, name: str) -> TrustedKey | None:
        return next((k for k in self.keys if k.name == name), None)

    def trusted(self) -> dict[str, tuple[str, PublicKey]]:
        """keyid -> (name, key)."""
        out = {}
        for k in self.keys:
            pub = k.public
            out[pub.keyid] = (k.name, pub)
        return out

    def rule_for(self, model: str, ref: str) -> Rule | None:
        """The most specific matching rule (exact model and ref beat ``*``)."""
        found = [r for r in self.rules if r.matches(model, ref)]
        if not found:
            return None
        return max(found, key=lambda r: (r.model != "*", r.ref != "*", r.signatures))

    def payload(self) -> bytes:
        """The JSON bytes a policy envelope signs: compact, fields in declaration order,
        non-ASCII as UTF-8, ``created_at`` as RFC 3339; byte for byte what earlier casstore
        versions signed (tests/core/test_trust_format.py pins it)."""
        return msgspec.json.encode(self)

    @classmethod
    def from_payload(cls, payload: bytes) -> TrustPolicy:
        """The policy in a signed payload; :class:`ValidationError` (or msgspec's
        ``DecodeError`` for bytes that are not JSON) when it does not fit."""
        return msgspec.json.decode(payload, type=cls)

    def to_dict(self) -> dict[str, object]:
        d = self.to_builtins()
        d["keys"] = [{"name": k.name, "keyid": k.public.keyid, "pem": k.pem} for k in self.keys]
        return d


def make_rule(text: str, signatures: int = 1, keys: Sequence[str] = ()) -> Rule:
    """``REF`` or ``MODEL:REF`` (``*`` for any) -> a rule."""
    model, sep, ref = text.rpartition(":")
    model = model if sep else "*"
    for kind, name in (("model", model), ("ref", ref)):
        if name != "*":
            check_name(kind, name)
    try:  # parse: the values come from a user (``--signatures``), checked like a stored rule
        return Rule.parse({"model": model, "ref": ref, "signatures": signatures,
                           "keys": list(keys)})
    except ValidationError as e:
        raise InvalidInputError(f"bad rule {text!r}: {e}") from None


@dataclass(frozen=True)
class _Link:
    serial: int
    sha256: str
    policy: TrustPolicy
    signer: str  # keyid


def _read_chain(ctx: StoreContext) -> list[_Link]:
    """Every policy in order, each checked against its predecessor; UntrustedError if the
    chain is broken anywhere."""
    serials = sorted(
        s for s in (serial_from_trust_key(i.key) for i in ctx.store.list(TRUST)) if s is not None
    )
    if not serials:
        return []
    raws = ctx.store.get_many([trust_key(s) for s in serials])
    chain: list[_Link] = []
    for expect, serial in enumerate(serials):
        raw = raws[trust_key(serial)]
        if serial != expect:
            raise UntrustedError(f"trust policy chain has a gap before serial {serial}")
        try:
            env = json.loads(raw)
            policy = TrustPolicy.from_payload(base64.b64decode(env["payload"]))
        except (ValueError, KeyError, TypeError, msgspec.DecodeError) as e:
            raise UntrustedError(f"trust policy {serial} is unreadable: {e}") from None
        signers = chain[-1].policy.trusted() if chain else policy.trusted()
        signer = _signed_by(env, signers)
        if signer is None:
            who = "a key the previous policy trusts" if chain else "one of its own keys"
            raise UntrustedError(f"trust policy {serial} is not signed by {who}")
        prev = chain[-1].sha256 if chain else ""
        if policy.serial != serial or policy.previous != prev:
            raise UntrustedError(f"trust policy {serial} does not follow policy {serial - 1}")
        chain.append(_Link(serial, _sha256(raw), policy, signer))
    return chain


def _signed_by(env: object, keys: dict[str, tuple[str, PublicKey]]) -> str | None:
    from casstore.ops.signing import open_envelope

    for keyid, (_, key) in keys.items():
        try:
            open_envelope(env, POLICY_PAYLOAD_TYPE, key)
        except UntrustedError:
            continue
        return keyid
    return None


def read_policy(ctx: StoreContext) -> TrustPolicy | None:
    """The policy in force (None: no policy yet), after checking the whole chain."""
    chain = _read_chain(ctx)
    return chain[-1].policy if chain else None


def set_policy(
    ctx: StoreContext,
    keys: Sequence[tuple[str, bytes]],
    rules: Sequence[Rule],
    signer: PrivateKey,
    *,
    force_init: bool = False,
) -> TrustPolicy:
    """Replace the policy: ``keys`` are (name, public PEM). The change must be signed by a key
    the current policy trusts; the first policy needs ``force_init`` and a signer among its own
    keys (so it can be changed again). Validated completely before anything is stored."""
    from casstore.ops.signing import PublicKey, seal

    trusted = []
    seen_names, seen_ids = set(), set()
    for name, pem in keys:
        check_name("key", name)
        pub = PublicKey.from_pem(pem)
        if name in seen_names or pub.keyid in seen_ids:
            raise InvalidInputError(f"key {name!r} is listed twice")
        seen_names.add(name)
        seen_ids.add(pub.keyid)
        trusted.append(TrustedKey(name=name, pem=pub.pem.decode()))
    if not trusted:
        raise InvalidInputError("a trust policy needs at least one trusted key")
    for r in rules:
        unknown = [k for k in r.keys if k not in seen_names]
        if unknown:
            raise InvalidInputError(f"rule {r.model}:{r.ref} names unknown keys {unknown}")
        allowed = len(r.keys) or len(trusted)
        if r.signatures > allowed:
            raise InvalidInputError(
                f"rule {r.model}:{r.ref} requires {r.signatures} signatures from {allowed} keys"
            )
    chain = _read_chain(ctx)
    signer_id = signer.public.keyid
    if chain:
        if force_init:
            raise InvalidInputError("a trust policy exists: --force-init applies only to none")
        if signer_id not in chain[-1].policy.trusted():
            raise UntrustedError(
                f"key {signer_id[:12]} is not trusted by the current policy: a change must be "
                "signed by a currently trusted key"
            )
    else:
        if not force_init:
            raise InvalidInputError("the store has no trust policy yet: pass --force-init")
        if signer_id not in seen_ids:
            raise InvalidInputError("the first policy must be signed by one of its own keys")
    serial = len(chain)
    policy = TrustPolicy(
        serial=serial,
        previous=chain[-1].sha256 if chain else "",
        keys=tuple(trusted),
        rules=tuple(rules),
        created_at=dt.datetime.now(dt.timezone.utc),
        created_by=ctx.actor,
    )
    payload = policy.payload()
    try:  # what readers will parse: a policy they refuse would break the chain for good
        policy = TrustPolicy.from_payload(payload)
    except msgspec.DecodeError as e:
        raise InvalidInputError(f"invalid trust policy: {e}") from None
    env = seal(POLICY_PAYLOAD_TYPE, payload, signer)
    if not ctx.store.put_if_absent(trust_key(serial), json.dumps(env).encode()):
        raise AlreadyExistsError(f"trust policy {serial} was written concurrently; read it again")
    return policy


class TrustGate:
    """Decides whether a ref may point at versions, per the store's trust policy.

    It remembers every policy object it has validated and refuses a chain that no longer
    contains them (deleted or replaced by someone with bucket access); ``anchors`` (key ids)
    must sign the first policy when given. A gate made per command sees the chain as it is; a
    follower keeps one gate for its lifetime.
    """

    def __init__(self, ctx: StoreContext, anchors: Sequence[str] = ()) -> None:
        self.ctx = ctx
        self.anchors = tuple(check_keyid(a) for a in anchors)
        self._seen: dict[int, str] = {}

    def policy(self) -> TrustPolicy | None:
        chain = _read_chain(self.ctx)
        if self.anchors and (not chain or chain[0].signer not in self.anchors):
            raise UntrustedError("the trust policy is not rooted in an anchor key")
        have = {link.serial: link.sha256 for link in chain}
        for serial, sha in self._seen.items():
            if have.get(serial) != sha:
                raise UntrustedError(
                    f"trust policy {serial} was removed or replaced since this process read it"
                )
        self._seen.update(have)
        return chain[-1].policy if chain else None

    def refusal(self, model: str, ref: str, versions: Sequence[tuple[str, str]]) -> str:
        """Why ``ref`` must not point at ``versions`` (semver, manifest hex), or ''."""
        try:
            policy = self.policy()
        except UntrustedError as e:
            return f"trust policy: {e}"
        rule = policy.rule_for(model, ref) if policy is not None else None
        if rule is None or policy is None:
            return ""
        from casstore.ops.signing import check_signatures

        trusted = policy.trusted()
        if rule.keys:
            trusted = {k: v for k, v in trusted.items() if v[0] in rule.keys}
        for semver, manifest in versions:
            checks = check_signatures(self.ctx, model, semver, manifest, trusted.values())
            good = {c.keyid for c in checks if c.ok}
            if len(good) < rule.signatures:
                bad = [f"{c.keyid[:12]}: {c.problem}" for c in checks if not c.ok]
                return (
                    f"{model} {semver} has {len(good)} valid signature(s) from trusted keys; "
                    f"{model}@{ref} requires {rule.signatures}"
                    + (f" ({'; '.join(bad)})" if bad else "")
                )
        return ""

    def require(self, model: str, ref: str, versions: Sequence[tuple[str, str]]) -> None:
        """UntrustedError unless ``ref`` may point at ``versions``."""
        why = self.refusal(model, ref, versions)
        if why:
            raise UntrustedError(f"refused: {why}")


def _sha256(raw: bytes) -> str:
    import hashlib  # here: a store without a trust policy never needs it

    return hashlib.sha256(raw).hexdigest()
