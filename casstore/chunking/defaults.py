"""The defaults a store is created with, apart from the chunker and codec code, so reading a
store's config (every command does) loads neither."""

from __future__ import annotations

DEFAULT_CHUNKER = "tensor/max=16777216;fastcdc/avg=65536,min=16384,max=262144"
POLICY_NAMES = ("off", "fast", "max")
"""Chunk encoding policies (:data:`casstore.chunking.encodings.POLICIES` defines them)."""
DEFAULT_POLICY = "fast"
