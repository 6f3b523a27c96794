"""Probe whether a store really honours conditional writes.

Some S3-compatible servers accept ``If-None-Match`` / ``If-Match`` and silently ignore them.
:func:`probe_conditional_writes` checks once, on a scratch key under ``tmp/``, that
``put_if_absent`` refuses an existing key and ``replace_if_match`` refuses a stale token.
"""

from __future__ import annotations

import os

from casstore.errors import ConflictError
from casstore.store.base import ObjectStore


def probe_conditional_writes(store: ObjectStore) -> bool:
    """True if ``store`` refused every write it should refuse. Backend errors propagate
    (an error is not an answer); the scratch key is deleted afterwards."""
    key = f"tmp/probe-{os.urandom(16).hex()}"
    try:
        if not store.put_if_absent(key, b"first"):
            return False  # a fresh random key cannot exist
        if store.put_if_absent(key, b"second") or store.get(key) != b"first":
            return False
        _, stale = store.get_with_token(key)
        store.replace_if_match(key, b"third", stale)
        for token in (stale, None):
            try:
                store.replace_if_match(key, b"fourth", token)
            except ConflictError:
                continue
            return False
        return store.get(key) == b"third"
    finally:
        store.delete(key)
