"""The store's own record: format version and chunking settings, kept at the ``config`` key."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, ValidationError

from casstore.chunking import DEFAULT_CHUNKER, get_chunker
from casstore.errors import CorruptObjectError, NotFoundError, StoreFormatError
from casstore.repo.keys import CONFIG
from casstore.store.base import ObjectStore

STORE_FORMAT = "casstore"
STORE_FORMAT_VERSION = 1


class StoreConfig(BaseModel):
    """Settings a store is created with. Unknown keys from a newer casstore are an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    format: str = STORE_FORMAT
    format_version: int = STORE_FORMAT_VERSION
    chunker: str = DEFAULT_CHUNKER
    single_writer: bool = False  # allow ref moves on backends without conditional writes
    conditional_writes: bool | None = None  # what the probe found when the store was created
    created_at: dt.datetime | None = None


def load_config(store: ObjectStore) -> StoreConfig | None:
    """The store's config, None if the store was never written, StoreFormatError if unknown."""
    try:
        raw = store.get(CONFIG)
    except NotFoundError:
        return None
    import json

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
    try:
        cfg = StoreConfig.model_validate(data)
    except ValidationError as e:
        raise StoreFormatError(f"{store.url}: store config not understood: {e}") from e
    get_chunker(cfg.chunker)  # an unknown chunker is refused here, not mid-commit
    return cfg


def save_config(store: ObjectStore, cfg: StoreConfig) -> StoreConfig:
    """Create the config if absent; returns the config that is in force afterwards."""
    if cfg.created_at is None:
        cfg = cfg.model_copy(update={"created_at": dt.datetime.now(dt.timezone.utc)})
    get_chunker(cfg.chunker)
    store.put_if_absent(CONFIG, cfg.model_dump_json(indent=2).encode())
    existing = load_config(store)
    assert existing is not None
    return existing


def replace_config(store: ObjectStore, cfg: StoreConfig) -> None:
    """Overwrite settings (``casstore init`` on an existing store)."""
    get_chunker(cfg.chunker)
    store.put(CONFIG, cfg.model_dump_json(indent=2).encode())
