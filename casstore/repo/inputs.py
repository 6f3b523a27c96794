"""Turning user paths (files and folders) into the relative file list of a version."""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterable
from pathlib import Path

from casstore.errors import InvalidInputError
from casstore.repo.manifest import check_relpath


def collect(paths: Iterable[str | os.PathLike[str]]) -> list[tuple[str, Path]]:
    """(relative path in version, file) for each file; folders contribute their contents.

    A file argument keeps its base name; a folder argument contributes every regular file below
    it, relative to the folder. Everything is checked before anything is stored: missing or
    unreadable paths and clashing names are errors.
    """
    out: dict[str, Path] = {}
    paths = list(paths)
    if not paths:
        raise InvalidInputError("nothing to commit: give at least one file or folder")
    for p in map(Path, paths):
        if not p.exists():
            raise InvalidInputError(f"no such file or folder: {p}")
        if p.is_dir():
            found = False
            for root, dirs, files in os.walk(p, onerror=_walk_error):
                dirs.sort()
                for name in sorted(files):
                    f = Path(root, name)
                    if not f.is_file():
                        continue
                    _add(out, f.relative_to(p).as_posix(), f)
                    found = True
            if not found:
                raise InvalidInputError(f"folder has no files: {p}")
        elif p.is_file():
            _add(out, p.name, p)
        else:
            raise InvalidInputError(f"not a regular file or folder: {p}")
    for rel, f in out.items():
        if not os.access(f, os.R_OK):
            raise InvalidInputError(f"cannot read {f}")
        check_relpath(rel)
    return sorted(out.items())


def _add(out: dict[str, Path], rel: str, f: Path) -> None:
    if rel in out:
        raise InvalidInputError(f"two inputs map to the same path {rel!r}: {out[rel]} and {f}")
    out[rel] = f


def _walk_error(e: OSError) -> None:
    raise InvalidInputError(f"cannot read folder {e.filename}: {e.strerror}")


class FileSource:
    """A positional reader over an open file (``os.pread``): thread-safe and copy-light."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDONLY)
            self.size = os.fstat(self._fd).st_size
        except OSError as e:
            raise InvalidInputError(f"cannot read {path}: {e.strerror}") from e

    def read_at(self, offset: int, length: int) -> bytes:
        data = os.pread(self._fd, length, offset)
        if len(data) != length:
            raise InvalidInputError(f"{self.path} changed size while being read")
        return data

    def view_at(self, offset: int, length: int) -> memoryview:
        """A zero-copy view of ``[offset, offset + length)`` through a private memory map.

        The mapping lives exactly as long as views of it do, so resident pages stay bounded
        by what the caller holds (the writer's in-flight budget), not by the file size.
        """
        if length == 0:
            return memoryview(b"")
        if offset + length > self.size:
            raise InvalidInputError(f"{self.path} changed size while being read")
        base = offset - offset % mmap.ALLOCATIONGRANULARITY
        try:
            m = mmap.mmap(self._fd, offset + length - base, prot=mmap.PROT_READ, offset=base)
        except (OSError, ValueError) as e:
            raise InvalidInputError(f"cannot map {self.path}: {e}") from e
        if hasattr(m, "madvise"):
            m.madvise(mmap.MADV_SEQUENTIAL)
        return memoryview(m)[offset - base :]

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
