"""The store's own record: format version, chunking and encoding settings, at the ``config`` key.

A store whose chunks may be encoded (``encoding`` other than ``off``) is format 2, so a
casstore from before encodings refuses it with an "upgrade" message instead of failing on its
chunks. A config written before encodings existed has no ``encoding`` key and reads as ``off``:
such a store keeps writing raw chunks, readable by old and new casstore alike, until
``casstore init --encoding fast`` opts it in.
"""

from __future__ import annotations

import datetime as dt
import json

from casstore.chunking.defaults import DEFAULT_CHUNKER, DEFAULT_POLICY, POLICY_NAMES
from casstore.errors import CorruptObjectError, NotFoundError, StoreFormatError
from casstore.records import Record, ValidationError
from casstore.repo.keys import CONFIG
from casstore.store.base import ObjectStore

STORE_FORMAT = "casstore"
STORE_FORMAT_VERSION = 2
RAW_FORMAT_VERSION = 1  # what a store with encoding "off" records: old casstore reads it


class StoreConfig(Record, kw_only=True):
    """Settings a store is created with. Unknown keys from a newer casstore are an error."""

    format: str = STORE_FORMAT
    format_version: int = STORE_FORMAT_VERSION
    chunker: str = DEFAULT_CHUNKER
    encoding: str = DEFAULT_POLICY  # chunk encoding policy: off | fast | max
    single_writer: bool = False  # allow ref moves on backends without conditional writes
    conditional_writes: bool | None = None  # what the probe found when the store was created
    created_at: dt.datetime | None = None


def load_config(store: ObjectStore) -> StoreConfig | None:
    """The store's config, None if the store was never written, StoreFormatError if unknown."""
    try:
        raw = store.get(CONFIG)
    except NotFoundError:
        return None
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise CorruptObjectError(f"{store.url}: store config is not JSON: {e}") from e
    if not isinstance(data, dict) or data.get("format") != STORE_FORMAT:
        raise StoreFormatError(f"{store.url} is not a casstore store")
    version = data.get("format_version")
    if not isinstance(version, int) or version > STORE_FORMAT_VERSION:
        raise StoreFormatError(
            f"{store.url} uses store format {version!r}; this casstore understands up to "
            f"{STORE_FORMAT_VERSION}. Upgrade casstore to use it."
        )
    data.setdefault("encoding", "off")  # written before encodings: keep it readable by all
    try:
        cfg = StoreConfig.parse(data)
    except ValidationError as e:
        raise StoreFormatError(f"{store.url}: store config not understood: {e}") from e
    _check_encoding(cfg.encoding)  # an unknown encoding is refused here, not mid-read
    return cfg


def _check_encoding(name: str) -> None:
    if name not in POLICY_NAMES:
        from casstore.chunking.encodings import get_policy

        get_policy(name)  # refuses it, naming the policies


def _check(cfg: StoreConfig) -> StoreConfig:
    """Refuse a config readers would refuse, or an unknown chunker or encoding, before it is
    written. (A config read from a store has its chunker checked when a commit first uses it,
    before anything is stored: reading commands need no chunker code.)"""
    from casstore.chunking.registry import get_chunker

    cfg = cfg.checked("store config")
    get_chunker(cfg.chunker)
    _check_encoding(cfg.encoding)
    version = RAW_FORMAT_VERSION if cfg.encoding == "off" else STORE_FORMAT_VERSION
    return cfg.replace(format_version=version)


def _dump(cfg: StoreConfig) -> bytes:
    data = cfg.to_builtins()
    if cfg.encoding == "off":
        del data["encoding"]  # byte-compatible with configs from before encodings
    return json.dumps(data, indent=2).encode()


def save_config(store: ObjectStore, cfg: StoreConfig) -> StoreConfig:
    """Create the config if absent; returns the config that is in force afterwards."""
    if cfg.created_at is None:
        cfg = cfg.replace(created_at=dt.datetime.now(dt.timezone.utc))
    store.put_if_absent(CONFIG, _dump(_check(cfg)))
    existing = load_config(store)
    assert existing is not None
    return existing


def replace_config(store: ObjectStore, cfg: StoreConfig) -> None:
    """Overwrite settings (``casstore init`` on an existing store).

    The format version never goes down: a store that held encoded chunks keeps format 2
    after ``--encoding off`` (its old chunks stay encoded), so old casstore still refuses it.
    """
    new = _check(cfg)
    old = load_config(store)
    if old is not None and old.format_version > new.format_version:
        new = new.replace(format_version=old.format_version)
    store.put(CONFIG, _dump(new))
