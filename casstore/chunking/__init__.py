"""Pure chunkers: split a file, read through ``read_at``, into content-defined pieces.

The default, tensor-aware chunker cuts at tensor payload boundaries of safetensors and torch
zip files (so the same tensor is the same chunks in a ``.pt`` and a ``.safetensors``), and
uses FastCDC for everything else. Nothing here does I/O of its own or imports torch.
"""

from casstore.chunking.base import Chunker, FileLayout, ReadAt, TensorInfo
from casstore.chunking.detect import detect_layout
from casstore.chunking.registry import DEFAULT_CHUNKER, get_chunker, make_chunker
from casstore.chunking.torch_pickle import check_pickle_safe

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
