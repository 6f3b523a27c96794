"""Recognise a file's format from its name and first bytes, and parse its layout.

Order: ``.safetensors`` by name (strict); a zip (``PK\\x03\\x04``) holding ``data.pkl`` is a
torch archive (with a torch name, .pt .pth .bin .ckpt, it must be one); a pickle with a torch
name is a legacy torch file and must pass the pickle safety check; a header that parses as
safetensors; anything else is raw.
"""

from __future__ import annotations

from collections.abc import Collection

from casstore.chunking.base import RAW, TORCH_PICKLE, FileLayout, ReadAt, check_size, read_exact
from casstore.chunking.safetensors_format import looks_like_safetensors, parse_safetensors
from casstore.chunking.torch_pickle import check_legacy_stream
from casstore.chunking.torch_zip import ZIP_MAGIC, NotTorchZip, UnreadableZip, parse_torch_zip
from casstore.errors import InvalidInputError

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def detect_layout(
    read_at: ReadAt, size: int, filename: str = "", allow: Collection[str] = ()
) -> FileLayout:
    """Parse only: the layout of the file. InvalidInputError (UnsafePickleError for pickles
    that would run code) if the file claims a format and breaks it. ``allow`` names extra
    globals a torch pickle may use (as inert stubs: nothing is imported or called)."""
    check_size(size, filename)
    name = filename.lower()
    if name.endswith(".safetensors"):
        return parse_safetensors(read_at, size, filename)
    torchy = name.endswith(TORCH_SUFFIXES)
    head = read_exact(read_at, 0, min(size, 16), filename)
    if head.startswith(ZIP_MAGIC):
        try:
            return parse_torch_zip(read_at, size, filename, allow)
        except (NotTorchZip, UnreadableZip):
            if torchy:  # what torch.load would open must be what was checked
                raise
            return FileLayout(RAW)
    if torchy and len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:  # PROTO 2..5
        check_legacy_stream(read_at, size, filename, allow)
        return FileLayout(TORCH_PICKLE)
    if looks_like_safetensors(head, size):
        try:
            return parse_safetensors(read_at, size, filename)
        except InvalidInputError:
            pass  # only looked like one
    return FileLayout(RAW)
