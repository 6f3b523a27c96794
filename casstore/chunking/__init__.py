"""Pure chunkers: split a file, read through ``read_at``, into content-defined pieces.

The default, tensor-aware chunker cuts at tensor payload boundaries of safetensors and torch
zip files (so the same tensor is the same chunks in a ``.pt`` and a ``.safetensors``), and
uses FastCDC for everything else. Nothing here does I/O of its own or imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from casstore._lazy import lazy_attributes
from casstore.chunking.defaults import DEFAULT_CHUNKER

if TYPE_CHECKING:
    from casstore.chunking.base import Chunker, FileLayout, ReadAt, TensorInfo
    from casstore.chunking.detect import detect_layout
    from casstore.chunking.registry import get_chunker, make_chunker
    from casstore.chunking.torch_pickle import check_pickle_safe

_LAZY = {
    "Chunker": "casstore.chunking.base",
    "FileLayout": "casstore.chunking.base",
    "ReadAt": "casstore.chunking.base",
    "TensorInfo": "casstore.chunking.base",
    "detect_layout": "casstore.chunking.detect",
    "get_chunker": "casstore.chunking.registry",
    "make_chunker": "casstore.chunking.registry",
    "check_pickle_safe": "casstore.chunking.torch_pickle",
}
"""Imported on first use: reading a config needs none of this, reading chunks (``encodings``,
``base``) none of the parsers."""


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())


__all__ = [
    "DEFAULT_CHUNKER",
    "Chunker",
    "FileLayout",
    "ReadAt",
    "TensorInfo",
    "check_pickle_safe",
    "detect_layout",
    "get_chunker",
    "make_chunker",
]
