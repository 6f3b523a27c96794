"""Signatures over versions in the OpenSSF model-signing format, stored with the version.

A signature is a Sigstore bundle (media type v0.3) whose DSSE envelope carries an in-toto
statement: predicate ``https://model_signing/signature/v1.0`` with ``serialization: {method:
files, hash_type: sha256}`` and one ``resources`` entry (path, SHA-256) per file, exactly what
``model_signing sign key`` writes, so ``model_signing verify key`` accepts a checked-out folder
with the bundle saved as ``model.sig``. The predicate also carries a ``casstore`` field (model,
version, manifest digest; v1.0 verifiers ignore unknown predicate fields) which binds the
signature to one manifest: checking a version's signatures then costs O(1) requests, because
the manifest's blake3 digest already pins every byte. The SHA-256 digests are computed at sign
time from verified reads (see ``benchmarks/signing.py`` for why not at commit).

Keys are EC P-256/P-384/P-521 PEM files (what model-signing's key mode supports); private keys
never enter the store. A key is named by its key id: the SHA-256 of its public PEM, the
``publicKey.hint`` model-signing records. The format is written with ``cryptography`` (imported
in ~20 ms) rather than through ``model_signing`` (1.3-3.2 s to import, via sigstore), since
every guarded ref move and every follower swap verifies; the test suite checks compatibility by
running the real ``model_signing`` CLI on checked-out folders.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from casstore.errors import (
    CorruptObjectError,
    InvalidInputError,
    NotFoundError,
    UnsupportedError,
    UntrustedError,
)
from casstore.repo.catalog import Version
from casstore.repo.context import StoreContext
from casstore.repo.keys import model_signatures_prefix, signature_key, signatures_prefix
from casstore.repo.manifest import FileEntry

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
SIGNATURE_FILE = "model.sig"
IGNORE_PATHS = (".github", ".gitignore", ".gitattributes", SIGNATURE_FILE, ".git")
"""What ``model_signing sign key --signature model.sig`` records as ignored."""

_CURVES = {"secp256r1": "SHA256", "secp384r1": "SHA384", "secp521r1": "SHA512"}


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
    except ImportError:  # pragma: no cover - the sign extra is missing
        raise UnsupportedError(
            "signatures need the 'cryptography' package: pip install 'casstore[sign]'"
        ) from None
    return hashes, serialization, ec


# -- keys ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PublicKey:
    """An EC public key; ``keyid`` is the SHA-256 of its SubjectPublicKeyInfo PEM."""

    pem: bytes
    key: Any = field(repr=False, compare=False)

    @property
    def keyid(self) -> str:
        return hashlib.sha256(self.pem).hexdigest()

    @classmethod
    def from_pem(cls, data: bytes | str) -> PublicKey:
        _, serialization, _ = _crypto()
        raw = data.encode() if isinstance(data, str) else bytes(data)
        try:
            key = serialization.load_pem_public_key(raw)
        except (ValueError, TypeError) as e:
            raise InvalidInputError(f"not a PEM public key: {e}") from None
        return cls(_canonical_pem(_check_ec(key)), key)

    def verify(self, signature: bytes, data: bytes) -> bool:
        _, _, ec = _crypto()
        from cryptography.exceptions import InvalidSignature

        try:
            self.key.verify(signature, data, ec.ECDSA(_hash_of(self.key)))
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class PrivateKey:
    """An EC private key, read from PEM bytes (a file or an environment variable)."""

    key: Any = field(repr=False)

    @classmethod
    def from_pem(cls, data: bytes | str, password: bytes | None = None) -> PrivateKey:
        _, serialization, _ = _crypto()
        raw = data.encode() if isinstance(data, str) else bytes(data)
        try:
            key = serialization.load_pem_private_key(raw, password)
        except (ValueError, TypeError) as e:
            raise InvalidInputError(f"not a usable PEM private key: {e}") from None
        _check_ec(key.public_key())
        return cls(key)

    @property
    def public(self) -> PublicKey:
        pub = self.key.public_key()
        return PublicKey(_canonical_pem(pub), pub)

    def sign(self, data: bytes) -> bytes:
        _, _, ec = _crypto()
        return self.key.sign(data, ec.ECDSA(_hash_of(self.key.public_key())))


def _check_ec(key: Any) -> Any:
    _, _, ec = _crypto()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in _CURVES:
        raise InvalidInputError(
            "unsupported key: model-signing keys are EC P-256, P-384 or P-521 "
            "(e.g. openssl ecparam -name prime256v1 -genkey -noout -out key.pem)"
        )
    return key


def _hash_of(pub: Any) -> Any:
    hashes, _, _ = _crypto()
    return getattr(hashes, _CURVES[pub.curve.name])()


def _canonical_pem(pub: Any) -> bytes:
    _, serialization, _ = _crypto()
    return pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# -- DSSE ----------------------------------------------------------------------------------
def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding of a payload."""
    return b"DSSEv1 %d %s %d %s" % (
        len(payload_type),
        payload_type.encode(),
        len(payload),
        payload,
    )


def seal(payload_type: str, payload: bytes, key: PrivateKey) -> dict[str, Any]:
    """A DSSE envelope over ``payload`` signed by ``key``."""
    return {
        "payload": base64.b64encode(payload).decode(),
        "payloadType": payload_type,
        "signatures": [
            {"sig": base64.b64encode(key.sign(pae(payload_type, payload))).decode(), "keyid": ""}
        ],
    }


def open_envelope(envelope: Any, payload_type: str, key: PublicKey) -> bytes:
    """The payload of a DSSE envelope if ``key`` signed it; else UntrustedError."""
    try:
        if envelope["payloadType"] != payload_type:
            raise UntrustedError(f"payload type is {envelope['payloadType']!r}")
        payload = base64.b64decode(envelope["payload"], validate=True)
        sigs = [base64.b64decode(s["sig"], validate=True) for s in envelope["signatures"]]
    except (KeyError, TypeError, ValueError) as e:
        raise UntrustedError(f"malformed signature envelope: {e}") from None
    if not any(key.verify(s, pae(payload_type, payload)) for s in sigs):
        raise UntrustedError(f"signature does not verify with key {key.keyid[:12]}")
    return payload


# -- versions ------------------------------------------------------------------------------
def file_sha256(ctx: StoreContext, entry: FileEntry) -> str:
    """SHA-256 of one file of a version, from digest-verified chunk reads."""
    h = hashlib.sha256()
    n = 0
    for payload in ctx.chunks.stream(entry.chunk_digests(), sizes=[s for _, s in entry.chunks]):
        h.update(payload)
        n += len(payload)
    if n != entry.size:
        raise CorruptObjectError(f"file {entry.path}: read {n} bytes, expected {entry.size}")
    return h.hexdigest()


def _path_order(path: str) -> tuple[str, ...]:
    return tuple(path.split("/"))  # model-signing sorts PurePosixPaths by their parts


def statement(version: Version, digests: dict[str, str], *, signer: str = "") -> dict[str, Any]:
    """The in-toto statement model-signing signs, plus casstore's binding to the manifest."""
    names = sorted(digests, key=_path_order)
    root = hashlib.sha256(b"".join(bytes.fromhex(digests[n]) for n in names)).hexdigest()
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": version.name, "digest": {"sha256": root}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": {
                "method": "files",
                "hash_type": "sha256",
                "allow_symlinks": False,
                "ignore_paths": list(IGNORE_PATHS),
            },
            "resources": [{"name": n, "algorithm": "sha256", "digest": digests[n]} for n in names],
            "casstore": {
                "model": version.model,
                "version": version.version,
                "manifest": version.id.hex(),
                "signed_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                "signer": signer,
            },
        },
    }


@dataclass(frozen=True)
class SignatureInfo:
    """One stored signature, and what checking it found (``problem`` empty: valid)."""

    model: str
    version: str
    keyid: str
    signer: str = ""
    signed_at: str = ""
    key_name: str = ""  # the trusted key's name, when checked against known keys
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem

    def to_dict(self) -> dict[str, Any]:
        """The signature's own fields (listed within its version's document)."""
        return {
            "keyid": self.keyid,
            "key_name": self.key_name,
            "signer": self.signer,
            "signed_at": self.signed_at,
            "valid": self.ok,
            "problem": self.problem,
        }


def sign_version(
    ctx: StoreContext, model: str, spec: str, key: PrivateKey, *, signer: str | None = None
) -> tuple[SignatureInfo, bytes]:
    """Sign a version's files with ``key`` and store the bundle with the version (one per key:
    signing again with the same key replaces it). Returns the info and the bundle bytes."""
    with ctx.writing("sign"):
        version = ctx.get_version(model, spec)
        digests = {f.path: file_sha256(ctx, f) for f in version.manifest.files}
        doc = statement(version, digests, signer=signer if signer is not None else ctx.actor)
        payload = json.dumps(doc, indent=2).encode()
        public = key.public
        bundle = {
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": {"publicKey": {"hint": public.keyid}, "tlogEntries": []},
            "dsseEnvelope": seal(PAYLOAD_TYPE, payload, key),
        }
        raw = json.dumps(bundle, indent=2).encode()
        ctx.store.put(signature_key(model, version.version, public.keyid), raw)
    info = _info(version.model, version.version, public.keyid, doc)
    return info, raw


def _info(
    model: str, semver: str, keyid: str, doc: dict[str, Any] | None, **kw: Any
) -> SignatureInfo:
    meta = (doc or {}).get("predicate", {}).get("casstore", {}) if isinstance(doc, dict) else {}
    meta = meta if isinstance(meta, dict) else {}
    return SignatureInfo(
        model,
        semver,
        keyid,
        signer=str(meta.get("signer", "")),
        signed_at=str(meta.get("signed_at", "")),
        **kw,
    )


def stored_signatures(ctx: StoreContext, model: str, semver: str) -> dict[str, bytes]:
    """keyid -> bundle bytes of every signature stored with a version (one listing)."""
    return signatures_of(ctx, model, [semver]).get(semver, {})


def signatures_of(ctx: StoreContext, model: str, semvers: Collection[str]
                  ) -> dict[str, dict[str, bytes]]:
    """semver -> keyid -> bundle bytes of the signatures stored with these versions of
    ``model``: one listing (the version's signatures for one version, the model's for
    several: a request per 1,000, not one per version) and one batch read (a signature
    replaced between the two is left out: the next check sees it)."""
    top = model_signatures_prefix(model)
    wanted = set(semvers)
    if not wanted:
        return {}
    prefix = signatures_prefix(model, next(iter(wanted))) if len(wanted) == 1 else top
    found: dict[str, tuple[str, str]] = {}
    for info in ctx.store.list(prefix):
        semver, _, keyid = info.key[len(top) :].partition("/")
        if semver in wanted:
            found[info.key] = (semver, keyid)
    out: dict[str, dict[str, bytes]] = {}
    for key, raw in ctx.store.get_found(found).items():
        semver, keyid = found[key]
        out.setdefault(semver, {})[keyid] = raw
    return out


def signature_bundle(ctx: StoreContext, model: str, semver: str, keyid: str | None = None) -> bytes:
    """One stored bundle: by key id, else the newest signature of the version."""
    found = stored_signatures(ctx, model, semver)
    if keyid is not None:
        match = [k for k in found if k.startswith(keyid)]
        if len(match) != 1:
            raise NotFoundError(f"{model} {semver} has no signature by key {keyid}")
        return found[match[0]]
    if not found:
        raise NotFoundError(f"{model} {semver} is not signed")
    infos = sorted(
        (_info(model, semver, k, _payload_unverified(raw)).signed_at, k) for k, raw in found.items()
    )
    return found[infos[-1][1]]


def _payload_unverified(raw: bytes) -> dict[str, Any] | None:
    try:
        env = json.loads(raw)["dsseEnvelope"]
        return json.loads(base64.b64decode(env["payload"]))
    except (ValueError, KeyError, TypeError):
        return None


def check_bundle(
    raw: bytes, key: PublicKey, *, model: str, semver: str, manifest: str
) -> dict[str, Any]:
    """The statement of a bundle if ``key`` signed it for this exact manifest; else
    UntrustedError saying why. Checks what ``model_signing`` checks (media type, key hint,
    DSSE signature, payload and statement types, the subject's root digest) plus the binding."""
    try:
        bundle = json.loads(raw)
        if bundle.get("mediaType") != BUNDLE_MEDIA_TYPE:
            raise UntrustedError(f"not a model-signing bundle: {bundle.get('mediaType')!r}")
        hint = bundle["verificationMaterial"]["publicKey"]["hint"]
        envelope = bundle["dsseEnvelope"]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise UntrustedError(f"malformed signature bundle: {e}") from None
    if hint != key.keyid:
        raise UntrustedError(f"signed by key {str(hint)[:12]}, not {key.keyid[:12]}")
    payload = open_envelope(envelope, PAYLOAD_TYPE, key)
    try:
        doc = json.loads(payload)
        pred = doc["predicate"]
        resources = pred["resources"]
        root = hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in resources))
        ok_types = doc["_type"] == STATEMENT_TYPE and doc["predicateType"] == PREDICATE_TYPE
        subject_digest = doc["subject"][0]["digest"]["sha256"]
        binding = pred["casstore"]
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise UntrustedError(f"signed statement is malformed: {e}") from None
    if not ok_types or root.hexdigest() != subject_digest:
        raise UntrustedError("signed statement is inconsistent (types or root digest)")
    want = {"model": model, "version": semver, "manifest": manifest}
    got = {k: binding.get(k) for k in want} if isinstance(binding, dict) else {}
    if got != want:
        raise UntrustedError(
            f"signature is for {got.get('model')} {got.get('version')} "
            f"(manifest {str(got.get('manifest'))[:12]}), not this version"
        )
    return doc


def check_signatures(
    ctx: StoreContext,
    model: str,
    semver: str,
    manifest: str,
    keys: Iterable[tuple[str, PublicKey]],
    *,
    read_data: bool = False,
) -> list[SignatureInfo]:
    """Every signature stored with a version, each checked against the named ``keys``
    (a signature by a key not among them is reported as untrusted). O(1) requests unless
    ``read_data``, which also recomputes every file's SHA-256 from verified reads and
    compares it with the signed resources."""
    known = {k.keyid: (name, k) for name, k in keys}
    out: list[SignatureInfo] = []
    digests: dict[str, str] | None = None
    for keyid, raw in sorted(stored_signatures(ctx, model, semver).items()):
        if keyid not in known:
            unknown = _info(model, semver, keyid, _payload_unverified(raw), problem="untrusted key")
            out.append(unknown)
            continue
        name, key = known[keyid]
        try:
            doc = check_bundle(raw, key, model=model, semver=semver, manifest=manifest)
            if read_data:
                if digests is None:
                    v = ctx.get_version(model, semver)
                    digests = {f.path: file_sha256(ctx, f) for f in v.manifest.files}
                signed = {r["name"]: r["digest"] for r in doc["predicate"]["resources"]}
                if signed != digests:
                    bad = sorted(set(signed.items()) ^ set(digests.items()))
                    raise UntrustedError(f"files differ from the signed ones: {bad[0][0]}")
        except UntrustedError as e:
            out.append(
                _info(model, semver, keyid, _payload_unverified(raw), key_name=name, problem=str(e))
            )
            continue
        out.append(_info(model, semver, keyid, doc, key_name=name))
    return out


def load_public_keys(pems: Sequence[bytes]) -> list[tuple[str, PublicKey]]:
    """(key id prefix as name, key) pairs for keys given on the command line."""
    keys = [PublicKey.from_pem(p) for p in pems]
    return [(k.keyid[:12], k) for k in keys]
