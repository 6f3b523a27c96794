"""Turning user paths (files and folders) into the relative file list of a version.

The rules for what a folder contributes (README, "What a commit takes from a folder"): every
regular file below it; a symlink to a file is followed (a Hugging Face cache snapshot is
symlinks into ``../../blobs/``); a symlink to a folder is followed too, and a symlink loop is
refused. Nothing is dropped silently: a broken symlink, a socket, FIFO or device is refused
with its path. A file that changes while it is committed is refused, nothing is published.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from casstore.errors import InvalidInputError
from casstore.repo.manifest import check_relpath


def collect(paths: Iterable[str | os.PathLike[str]]) -> list[tuple[str, Path]]:
    """(relative path in version, file) for each file; folders contribute their contents.

    A file argument keeps its base name; a folder argument contributes every regular file below
    it, relative to the folder (folder symlinks followed, loops refused). Everything is
    checked before anything is stored: missing or unreadable paths, broken symlinks, special
    files and clashing names are errors.
    """
    out: dict[str, Path] = {}
    paths = list(paths)
    if not paths:
        raise InvalidInputError("nothing to commit: give at least one file or folder")
    for p in map(Path, paths):
        if not p.exists():
            kind = "broken symlink" if p.is_symlink() else "no such file or folder"
            raise InvalidInputError(f"{kind}: {p}")
        if p.is_dir():
            before = len(out)
            _walk(p, p, out, ())
            if len(out) == before:
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


def _walk(root: Path, folder: Path, out: dict[str, Path],
          ancestors: tuple[tuple[int, int], ...]) -> None:
    """Add every file below ``folder``; ``ancestors`` are the (device, inode) of the real
    folders on the way down, so a symlink back up is recognised as a loop."""
    try:
        st = folder.stat()
        names = sorted(os.listdir(folder))
    except OSError as e:
        raise InvalidInputError(f"cannot read folder {folder}: {e.strerror}") from None
    here = (st.st_dev, st.st_ino)
    if here in ancestors:
        raise InvalidInputError(
            f"symlink loop: {folder} leads back to a folder above it; remove the link or "
            "commit the folders it names separately"
        )
    for name in names:
        f = folder / name
        try:
            st = f.stat()  # follows symlinks
        except FileNotFoundError:
            raise InvalidInputError(f"broken symlink: {f} -> {os.readlink(f)}") from None
        except OSError as e:
            raise InvalidInputError(f"cannot read {f}: {e.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            _walk(root, f, out, (*ancestors, here))
        elif stat.S_ISREG(st.st_mode):
            _add(out, f.relative_to(root).as_posix(), f)
        else:
            raise InvalidInputError(
                f"not a regular file: {f} (sockets, FIFOs and devices cannot be committed)"
            )


def _add(out: dict[str, Path], rel: str, f: Path) -> None:
    if rel in out:
        raise InvalidInputError(f"two inputs map to the same path {rel!r}: {out[rel]} and {f}")
    out[rel] = f


class FileSource:
    """A positional reader over an open file (``os.pread``/``os.preadv``): thread-safe.

    No memory map: a map of a file that shrinks under it (a trainer rewriting the checkpoint
    mid-commit) kills the process with SIGBUS, which no handler can turn into a clean error.
    Every read instead checks that it got every byte and that the file's size and mtime are
    still those seen at open, so a file changed while it is committed is refused.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDONLY)
            st = os.fstat(self._fd)
        except OSError as e:
            raise InvalidInputError(f"cannot read {path}: {e.strerror}") from e
        self.size = st.st_size
        self._stamp = (st.st_size, st.st_mtime_ns, st.st_ino)

    def _changed(self) -> InvalidInputError:
        return InvalidInputError(
            f"{self.path} changed while being committed (was it being rewritten?); nothing "
            "was published, commit it again once it is complete"
        )

    def _check(self, got: int, want: int) -> None:
        if got != want:
            raise self._changed()
        st = os.fstat(self._fd)
        if (st.st_size, st.st_mtime_ns, st.st_ino) != self._stamp:
            raise self._changed()

    def read_at(self, offset: int, length: int) -> bytes:
        if offset + length > self.size:
            raise self._changed()
        data = os.pread(self._fd, length, offset)
        self._check(len(data), length)
        return data

    def view_at(self, offset: int, length: int) -> memoryview:
        """``[offset, offset + length)`` read into a fresh buffer (one copy, no map)."""
        if length == 0:
            return memoryview(b"")
        if offset + length > self.size:
            raise self._changed()
        buf = memoryview(bytearray(length))
        got = 0
        while got < length:  # a read may return less than asked (e.g. over 2 GiB)
            n = os.preadv(self._fd, [buf[got:]], offset + got)
            if n == 0:
                break
            got += n
        self._check(got, length)
        return buf

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
