"""Checkout: write a version's files to a folder, verified, in bounded memory, never through a
symlink and never over an existing file unless asked to.

How one file is written:

1. Its folder is opened one component at a time, relative to the destination, with
   ``O_NOFOLLOW | O_DIRECTORY`` (missing folders are created), so a symlink planted anywhere
   below the destination is refused, never followed.
2. The file is created under an unpredictable temporary name (``.casstore-<random>.tmp``) in
   that folder with ``O_CREAT | O_EXCL | O_NOFOLLOW``: no existing name, file or symlink, is
   ever opened for writing, and a version that itself holds names like
   ``.x.casstore-tmp`` checks out like any other.
3. It is preallocated to its size, then filled with ``os.pwrite`` by a pool of threads, one
   chunk per task, each chunk read into the thread's reused buffers (local stores) and
   decoded a block at a time, a delta alongside its base, hashed as it goes: a chunk that
   does not match its digest fails the checkout, and its file never gets a name.
4. Only a complete file gets its name: ``link`` (refuses an existing name, so no overwrite
   race) or, with ``overwrite=True``, ``rename`` (which replaces a symlink at the name, never
   its target).

Memory: at most ``budget`` bytes of chunk buffers (threads = budget // largest chunk; when
the store encodes chunks, each thread's chunk object and decoded block, plus one delta base's
object and block that the threads take in turn), whatever the file sizes; decoding also holds
a chunk's compressed streams decompressed (for float tensors, a quarter to half of the chunk).
A failed or interrupted (Ctrl-C) checkout removes its temporary files, so no half-written file
is left under any name; after SIGKILL only hidden ``.casstore-*.tmp`` files can remain. Files
are not fsynced (like ``cp``): checkout is a copy of data the store keeps.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat as stat_mod
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from casstore.digest import Digest
from casstore.errors import (
    AlreadyExistsError,
    CorruptObjectError,
    InvalidInputError,
    NotFoundError,
)
from casstore.repo.chunks import (
    BLOCK_BYTES,
    HEAD_READ,
    BaseBuffers,
    BlockBuffers,
    ChunkReader,
)
from casstore.repo.manifest import FileEntry, Manifest

DEFAULT_BUDGET = 64 << 20
"""Bytes of chunk buffers a checkout may hold at once (its memory bound beyond the process)."""
MAX_OPEN_FILES = 32
"""Files being written at once (many small files pipeline; a big one fills the pool alone)."""
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _O_CLOEXEC
_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _O_CLOEXEC

Progress = Callable[[int], None]


def _fail(e: OSError, path: str, what: str) -> Exception:
    if e.errno == errno.ELOOP or e.errno == errno.ENOTDIR:
        return InvalidInputError(
            f"checkout: {path} is a symlink or not a folder; checkout never writes through "
            "a symlink (remove it, or check out to another folder)"
        )
    return OSError(e.errno, f"checkout: cannot {what} {path}: {e.strerror}")


def plan_checkout(manifest: Manifest, dest: Path, *, overwrite: bool) -> None:
    """Refuse, before anything is written, a version whose files cannot all be written under
    ``dest``: inconsistent sizes, a file that is also a folder of another, an existing file
    (unless ``overwrite``), a folder name taken by a file or a symlink."""
    paths = {f.path for f in manifest.files}
    for f in manifest.files:
        total = sum(n for _, n in f.chunks)
        if total != f.size:
            raise CorruptObjectError(
                f"version {manifest.name}, file {f.path}: chunks hold {total} bytes, "
                f"the manifest says {f.size}"
            )
        parts = f.path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in paths:
                raise CorruptObjectError(
                    f"version {manifest.name}: {'/'.join(parts[:i])} is both a file and a "
                    "folder"
                )
    existing = []
    for f in manifest.files:
        parts = f.path.split("/")
        for i in range(1, len(parts)):
            folder = dest.joinpath(*parts[:i])
            try:
                st = os.lstat(folder)
            except FileNotFoundError:
                break
            if not stat_mod.S_ISDIR(st.st_mode):
                raise _fail(OSError(errno.ENOTDIR, "not a folder"), str(folder), "open")
        else:
            target = dest.joinpath(*parts)
            if os.path.lexists(target):
                if stat_mod.S_ISDIR(os.lstat(target).st_mode):
                    raise AlreadyExistsError(f"checkout: {target} exists and is a folder")
                existing.append(str(target))
    if existing and not overwrite:
        shown = ", ".join(existing[:5]) + (f" and {len(existing) - 5} more" if
                                           len(existing) > 5 else "")
        raise AlreadyExistsError(
            f"checkout: {len(existing)} file(s) exist: {shown}; use --force "
            "(overwrite=True) to replace them"
        )


@dataclass
class _Pending:
    entry: FileEntry
    dir_fd: int
    name: str
    tmp: str
    fd: int
    futures: list[Future[None]] = field(default_factory=list)


class Checkout:
    """One checkout of a version to a folder (see the module docstring)."""

    def __init__(
        self,
        reader: ChunkReader,
        manifest: Manifest,
        dest: Path,
        *,
        overwrite: bool = False,
        budget: int = DEFAULT_BUDGET,
        workers: int | None = None,
        progress: Progress | None = None,
        encoded: bool = False,
    ) -> None:
        self.reader = reader
        self.manifest = manifest
        self.dest = dest
        self.overwrite = overwrite
        self.progress = progress
        self._largest = max((n for f in manifest.files for _, n in f.chunks), default=0)
        default = 16 if not reader.store.capabilities.local else 4
        per_worker = self._largest + HEAD_READ
        if encoded and reader.store.capabilities.local:
            per_worker += BLOCK_BYTES  # and a decoded block; one delta base's set for all
            budget -= per_worker
        elif encoded:  # a remote object is fetched into a fresh buffer, a delta's base too
            per_worker *= 2
        self.workers = max(1, min(workers or default, budget // per_worker))
        self._base = BaseBuffers(self._largest)
        self._local = threading.local()
        self._dirs: dict[tuple[str, ...], int] = {}

    # -- folders -------------------------------------------------------------------------
    def _dir_fd(self, parts: tuple[str, ...]) -> int:
        fd = self._dirs.get(parts)
        if fd is not None:
            return fd
        if not parts:
            try:
                fd = os.open(self.dest, os.O_RDONLY | os.O_DIRECTORY | _O_CLOEXEC)
            except OSError as e:
                raise _fail(e, str(self.dest), "open") from e
        else:
            parent = self._dir_fd(parts[:-1])
            path = str(self.dest.joinpath(*parts))
            try:
                os.mkdir(parts[-1], 0o777, dir_fd=parent)
            except FileExistsError:
                pass
            except OSError as e:
                raise _fail(e, path, "create folder") from e
            try:
                fd = os.open(parts[-1], _DIR_FLAGS, dir_fd=parent)
            except OSError as e:
                raise _fail(e, path, "open") from e
        self._dirs[parts] = fd
        return fd

    # -- one file ------------------------------------------------------------------------
    def _start(self, entry: FileEntry) -> _Pending:
        *folder, name = entry.path.split("/")
        dir_fd = self._dir_fd(tuple(folder))
        while True:
            tmp = f".casstore-{secrets.token_hex(12)}.tmp"
            try:
                fd = os.open(tmp, _TMP_FLAGS, 0o666, dir_fd=dir_fd)
                break
            except FileExistsError:
                continue  # astronomically unlikely; never reuse an existing name
            except OSError as e:
                raise _fail(e, str(self.dest / entry.path), "create") from e
        p = _Pending(entry, dir_fd, name, tmp, fd)
        if entry.size:
            try:
                os.posix_fallocate(fd, 0, entry.size)
            except OSError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    self._discard(p)
                    raise _fail(e, str(self.dest / entry.path), "write") from e
                os.ftruncate(fd, entry.size)
        return p

    def _buffers(self) -> BlockBuffers:
        bufs = getattr(self._local, "bufs", None)
        if bufs is None:
            bufs = self._local.bufs = BlockBuffers(self._largest, self._base)
        return bufs

    def _write_chunk(self, p: _Pending, index: int, offset: int) -> None:
        d, n = p.entry.chunks[index]
        blocks = self.reader.read_blocks(Digest(d), n, self._buffers())
        try:
            for block in blocks:
                view = memoryview(block).cast("B")
                done = 0
                while done < len(view):
                    done += os.pwrite(p.fd, view[done:], offset + done)
                offset += len(view)
        except (NotFoundError, CorruptObjectError) as e:
            raise type(e)(f"version {self.manifest.name}, file {p.entry.path}: {e}") from e
        finally:
            blocks.close()  # a failed write: the shared delta base's buffers are let go now
        if self.progress is not None:
            self.progress(n)

    def _finish(self, p: _Pending) -> Path:
        for f in p.futures:
            f.result()
        fd, p.fd = p.fd, -1
        os.close(fd)
        target = self.dest / p.entry.path
        try:
            if self.overwrite:
                os.rename(p.tmp, p.name, src_dir_fd=p.dir_fd, dst_dir_fd=p.dir_fd)
            else:
                self._link(p)
        except FileExistsError:
            raise AlreadyExistsError(
                f"checkout: {target} was created meanwhile; use --force to replace it"
            ) from None
        except OSError as e:
            raise _fail(e, str(target), "write") from e
        p.tmp = ""
        return target

    @staticmethod
    def _link(p: _Pending) -> None:
        """Give the file its name only if the name is free (a hard link cannot replace)."""
        try:
            os.link(p.tmp, p.name, src_dir_fd=p.dir_fd, dst_dir_fd=p.dir_fd,
                    follow_symlinks=False)
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            # no hard links here: check, then rename (the plan already refused existing names)
            with contextlib.suppress(FileNotFoundError):
                os.lstat(p.name, dir_fd=p.dir_fd)
                raise FileExistsError(errno.EEXIST, p.name) from None
            os.rename(p.tmp, p.name, src_dir_fd=p.dir_fd, dst_dir_fd=p.dir_fd)
            return
        os.unlink(p.tmp, dir_fd=p.dir_fd)

    @staticmethod
    def _discard(p: _Pending) -> None:
        if p.fd >= 0:
            os.close(p.fd)
            p.fd = -1
        if p.tmp:
            with contextlib.suppress(OSError):
                os.unlink(p.tmp, dir_fd=p.dir_fd)
            p.tmp = ""

    # -- the whole version ---------------------------------------------------------------
    def run(self) -> list[Path]:
        """Write every file; returns their paths in manifest order."""
        plan_checkout(self.manifest, self.dest, overwrite=self.overwrite)
        self.reader.remember_inline(self.manifest)
        out: list[Path] = []
        pending: deque[_Pending] = deque()
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="casstore-checkout")
        try:
            for entry in self.manifest.files:
                p = self._start(entry)
                pending.append(p)
                offset = 0
                for i, (_, n) in enumerate(entry.chunks):
                    p.futures.append(pool.submit(self._write_chunk, p, i, offset))
                    offset += n
                while pending and (len(pending) > MAX_OPEN_FILES
                                   or all(f.done() for f in pending[0].futures)):
                    out.append(self._finish(pending[0]))
                    pending.popleft()
            while pending:
                out.append(self._finish(pending[0]))
                pending.popleft()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            for p in pending:
                self._discard(p)
            raise
        finally:
            pool.shutdown(wait=True)
            for fd in self._dirs.values():
                os.close(fd)
            self._dirs.clear()
        return out


def checkout(
    reader: ChunkReader,
    manifest: Manifest,
    dest: Path,
    *,
    overwrite: bool = False,
    budget: int = DEFAULT_BUDGET,
    progress: Progress | None = None,
    encoded: bool = False,
) -> list[Path]:
    """Write every file of ``manifest`` under ``dest`` (see the module docstring);
    ``encoded``: the store may hold encoded chunks (each then costs twice its size)."""
    return Checkout(reader, manifest, dest, overwrite=overwrite, budget=budget,
                    progress=progress, encoded=encoded).run()


def write_beside(dest: Path, name: str, data: bytes, *, overwrite: bool = False) -> Path:
    """Write one small extra file (a signature) directly under ``dest`` by the same rules: an
    unpredictable temporary name opened ``O_EXCL | O_NOFOLLOW``, then ``link`` (refuses an
    existing name: AlreadyExistsError) or, with ``overwrite``, ``rename``."""
    dir_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | _O_CLOEXEC)
    tmp = f".casstore-{secrets.token_hex(8)}.tmp"
    try:
        fd = os.open(tmp, _TMP_FLAGS, 0o644, dir_fd=dir_fd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        if overwrite:
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        else:
            try:
                os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
            except FileExistsError:
                raise AlreadyExistsError(f"checkout: {dest / name} exists") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        os.close(dir_fd)
    return dest / name
