"""The only place object keys are built, and the validation of every name that enters one.

Store layout (keys are '/'-separated, relative to the store root)::

    config                                  store format version + chunking settings (JSON)
    chunks/<2 hex>/<64 hex>                 chunk objects: encoding header + payload
    manifests/<64 hex>                      immutable version manifests (msgpack)
    models/<model>/versions/<semver>        version index entry -> manifest digest
    models/<model>/tags/<tag>/<semver>      tag markers (empty objects)
    models/<model>/refs/<ref>               the only mutable objects (compare-and-swap)
    models/<model>/reflog/<ref>/<seq>       append-only history of ref moves
    models/<model>/expired/<semver>         markers of versions GC expired
    catalog/format                          marker: every model has a catalog (and stats base)
    catalog/heads/<model>                   per-model catalog head (compare-and-swap)
    catalog/segments/<model>/<64 hex>       sealed catalog segments (immutable, by digest)
    catalog/gc                              chunks and bytes deleted by GC (earlier releases)
    catalog/stats                           the last exact count, base of the stats counters
    models/<model>/signatures/<semver>/<keyid>  model-signing bundles over a version (JSON)
    sessions/<id>, gc/lock                  write sessions and the GC sweep lease
    gc/auto/<model>                         when automatic cleanup last checked a model
    tmp/                                    temporary files of in-progress writes
    policies/<model or _default>            retention policies (JSON)
    followers/<model>/<ref>/<id>            serving acknowledgements
    watch/<model>/<ref>/incidents/<seq>     automatic-rollback incidents, one per ref move
    watch/<model>/<ref>/healthy/<semver>    live figures a watcher saw while a version was fine
    trust/<serial>                          the signed trust policy chain (JSON envelopes)
"""

from __future__ import annotations

import re

from casstore.digest import Digest
from casstore.errors import InvalidInputError

CONFIG = "config"
CHUNKS = "chunks/"
MANIFESTS = "manifests/"
MODELS = "models/"
POLICIES = "policies/"
CATALOG_FORMAT = "catalog/format"
CATALOG_HEADS = "catalog/heads/"
CATALOG_SEGMENTS = "catalog/segments/"
CATALOG_GC = "catalog/gc"
CATALOG_STATS = "catalog/stats"
FOLLOWERS = "followers/"
WATCH = "watch/"
TRUST = "trust/"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
_KEYID = re.compile(r"[0-9a-f]{64}")
_SEMVER = re.compile(r"(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})")


def check_name(kind: str, name: object) -> str:
    """Validate a model, ref or tag name: one path component, no tricks.

    Allowed: letters, digits, ``.``, ``_``, ``-``, ``+``; starts with a letter or digit; at most
    128 characters. So ``/``, ``..``, empty names and control characters are all refused.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInputError(
            f"invalid {kind} name {name!r}: use 1-128 letters, digits, '.', '_', '-' or '+', "
            "starting with a letter or digit"
        )
    return name


def check_semver(text: object) -> str:
    if not isinstance(text, str) or not _SEMVER.fullmatch(text):
        raise InvalidInputError(f"invalid semantic version {text!r}: expected MAJOR.MINOR.PATCH")
    return text


def chunk_key(digest: Digest) -> str:
    h = digest.hex()
    return f"{CHUNKS}{h[:2]}/{h}"


def digest_from_chunk_key(key: str) -> Digest | None:
    """The digest a chunk key names, or None for anything else (temp files, strays)."""
    if not key.startswith(CHUNKS):
        return None
    name = key.rsplit("/", 1)[-1]
    try:
        d = Digest.parse(name)
    except InvalidInputError:
        return None
    return d if key == chunk_key(d) else None


def manifest_key(digest: Digest) -> str:
    return f"{MANIFESTS}{digest.hex()}"


def digest_from_manifest_key(key: str) -> Digest | None:
    if not key.startswith(MANIFESTS):
        return None
    try:
        return Digest.parse(key[len(MANIFESTS) :])
    except InvalidInputError:
        return None


def model_prefix(model: str) -> str:
    return f"{MODELS}{check_name('model', model)}/"


def versions_prefix(model: str) -> str:
    return f"{model_prefix(model)}versions/"


def version_key(model: str, semver: str) -> str:
    return f"{versions_prefix(model)}{check_semver(semver)}"


def tags_prefix(model: str) -> str:
    return f"{model_prefix(model)}tags/"


def tag_key(model: str, tag: str, semver: str) -> str:
    return f"{tags_prefix(model)}{check_name('tag', tag)}/{check_semver(semver)}"


def expired_key(model: str, semver: str) -> str:
    """Marker left by GC when it expires a version (so verify can tell expired from lost)."""
    return f"{expired_prefix(model)}{check_semver(semver)}"


def expired_prefix(model: str) -> str:
    return f"{model_prefix(model)}expired/"


def catalog_head_key(model: str) -> str:
    return f"{CATALOG_HEADS}{check_name('model', model)}"


def catalog_segment_key(model: str, digest: Digest) -> str:
    return f"{CATALOG_SEGMENTS}{check_name('model', model)}/{digest.hex()}"


def refs_prefix(model: str) -> str:
    return f"{model_prefix(model)}refs/"


def ref_key(model: str, ref: str) -> str:
    return f"{refs_prefix(model)}{check_name('ref', ref)}"


def reflog_root(model: str) -> str:
    return f"{model_prefix(model)}reflog/"


def reflog_prefix(model: str, ref: str) -> str:
    return f"{reflog_root(model)}{check_name('ref', ref)}/"


def reflog_key(model: str, ref: str, seq: int) -> str:
    if seq < 0:
        raise InvalidInputError(f"reflog sequence must be >= 0, got {seq}")
    return f"{reflog_prefix(model, ref)}{seq:012d}"


def policy_key(model: str | None) -> str:
    return f"{POLICIES}{'_default' if model is None else check_name('model', model)}"


def auto_gc_key(model: str) -> str:
    return f"gc/auto/{check_name('model', model)}"


def follower_key(model: str, ref: str, follower_id: str) -> str:
    return (
        f"{FOLLOWERS}{check_name('model', model)}/{check_name('ref', ref)}/"
        f"{check_name('follower', follower_id)}"
    )


def incident_key(model: str, ref: str, seq: int) -> str:
    if seq < 0:
        raise InvalidInputError(f"ref sequence must be >= 0, got {seq}")
    return f"{WATCH}{check_name('model', model)}/{check_name('ref', ref)}/incidents/{seq:012d}"


def healthy_figures_key(model: str, ref: str, semver: str) -> str:
    return (
        f"{WATCH}{check_name('model', model)}/{check_name('ref', ref)}/healthy/"
        f"{check_semver(semver)}"
    )


def check_keyid(keyid: object) -> str:
    """A key id: the SHA-256 (64 lowercase hex) of a public key's PEM, as model-signing uses."""
    if not isinstance(keyid, str) or not _KEYID.fullmatch(keyid):
        raise InvalidInputError(f"invalid key id {keyid!r}: expected 64 lowercase hex digits")
    return keyid


def is_keyid(text: str) -> bool:
    """``text`` is a key id as signature keys hold them (64 lowercase hex digits)."""
    try:
        check_keyid(text)
    except InvalidInputError:
        return False
    return True


def model_signatures_prefix(model: str) -> str:
    """Every signature of every version of ``model`` lies below this."""
    return f"{model_prefix(model)}signatures/"


def signatures_prefix(model: str, semver: str) -> str:
    return f"{model_signatures_prefix(model)}{check_semver(semver)}/"


def signature_key(model: str, semver: str, keyid: str) -> str:
    return f"{signatures_prefix(model, semver)}{check_keyid(keyid)}"


def trust_key(serial: int) -> str:
    if not isinstance(serial, int) or serial < 0:
        raise InvalidInputError(f"trust policy serial must be >= 0, got {serial!r}")
    return f"{TRUST}{serial:012d}"


def serial_from_trust_key(key: str) -> int | None:
    """The serial a trust policy key names, or None for anything else."""
    name = key[len(TRUST) :] if key.startswith(TRUST) else ""
    return int(name) if len(name) == 12 and name.isdigit() else None
