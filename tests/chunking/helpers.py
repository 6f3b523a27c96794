"""Helpers for the chunking tests: a read_at over a real file, and splitting into pieces."""

from __future__ import annotations

import os
from pathlib import Path

import blake3

from casstore.chunking import DEFAULT_CHUNKER, Chunker, FileLayout, get_chunker
from casstore.chunking.base import MAX_WINDOW


class FileReader:
    """``read_at`` over a real file that records the largest single read."""

    def __init__(self, path: Path):
        self.path = path
        self.size = path.stat().st_size
        self._fd = os.open(path, os.O_RDONLY)
        self.largest = 0
        self.reads = 0

    def __call__(self, offset: int, length: int) -> bytes:
        assert offset >= 0 and offset + length <= self.size, (offset, length, self.size)
        self.largest = max(self.largest, length)
        self.reads += 1
        data = os.pread(self._fd, length, offset)
        assert len(data) == length
        return data

    def close(self) -> None:
        os.close(self._fd)


def split_file(path: Path, chunker: Chunker | str | None = None) -> tuple[FileLayout, list[bytes]]:
    """Split a real file; check the pieces cover it exactly and reads stay bounded."""
    if chunker is None or isinstance(chunker, str):
        chunker = get_chunker(chunker or DEFAULT_CHUNKER)
    reader = FileReader(path)
    try:
        layout, pieces = chunker.split(reader, reader.size, path.name)
        out = [bytes(p) for p in pieces]
    finally:
        reader.close()
    assert b"".join(out) == path.read_bytes()
    assert all(out), "no empty pieces"
    assert reader.largest <= MAX_WINDOW
    return layout, out


def digests(pieces: list[bytes]) -> set[str]:
    return {blake3.blake3(p).hexdigest() for p in pieces}


def cut_offsets(pieces: list[bytes]) -> list[int]:
    offsets, pos = [], 0
    for p in pieces:
        offsets.append(pos)
        pos += len(p)
    return offsets
