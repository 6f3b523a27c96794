"""LocalStore: the embedded default backend, one file per key under a root folder.

Writes go to a temp file under ``<root>/tmp/`` and are then published in one step:
``os.replace`` for ``put``, ``os.link`` for ``put_if_absent`` (the kernel refuses an existing
name, so there is no check-then-write window), and ``os.replace`` under a per-key ``flock`` for
``replace_if_match``. A process killed at any moment leaves either no object or a whole one
(stray temp files remain under ``tmp/`` for GC).

The CAS token is a blake2b digest of the object's bytes (like an S3 ETag: writing the same
bytes again gives the same token). Conditional writes are atomic across processes on LOCAL
filesystems only: ``flock`` is
unreliable on NFS and some network filesystems, so do not share a LocalStore root between
machines. POSIX only (``fcntl``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat as stat_mod
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the fsync pool is imported where it starts
    from concurrent.futures import ThreadPoolExecutor

from casstore.errors import (
    BackendError,
    CasstoreError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    UnsupportedError,
)
from casstore.store._util import (
    RESERVED_DIRS,
    check_key,
    check_prefix,
    check_range,
    content_token,
)
from casstore.store.base import Capabilities, ObjectInfo, ObjectStore, Parts

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOT_AN_OBJECT = (errno.ENOENT, errno.ENOTDIR, errno.EISDIR)


def _translate(e: OSError, op: str, path: str, *, missing_is_not_found: bool = True) -> Exception:
    """OSError -> casstore error, with the path in the message."""
    if isinstance(e, CasstoreError):
        return e
    if missing_is_not_found and e.errno in _NOT_AN_OBJECT:
        return NotFoundError(errno.ENOENT, f"object not found: {path}")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PermissionDeniedError(e.errno, f"{op} {path}: permission denied ({e.strerror})")
    return BackendError(e.errno, f"{op} {path}: {e.strerror or e}")


def _fsync_path(path: str, *, directory: bool) -> None:
    flags = os.O_RDONLY | _O_CLOEXEC | (os.O_DIRECTORY if directory else 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return  # replaced or deleted since: nothing left to make durable
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore(ObjectStore):
    """Objects as files under ``root`` (keys map to relative paths; see module docstring)."""

    capabilities = Capabilities(
        atomic_create=True, conditional_replace=True, concurrent_io=8, local=True
    )

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.url = self.root
        self._tmp = os.path.join(self.root, "tmp")
        self._locks = os.path.join(self.root, "locks")
        self._dirs: set[str] = set()  # directories known to exist
        self._pending_files: set[str] = set()
        self._pending_dirs: set[str] = set()
        self._pending_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    # -- paths and durability ------------------------------------------------------------
    def _path(self, key: str) -> str:
        return os.path.join(self.root, *check_key(key).split("/"))

    def _dir_durable(self, directory: str, sync: bool) -> None:
        if sync:
            _fsync_path(directory, directory=True)
        else:
            with self._pending_lock:
                self._pending_dirs.add(directory)

    def _ensure_dir(self, directory: str, sync: bool) -> None:
        """Create ``directory`` and missing parents; make each new entry durable."""
        if directory in self._dirs:
            return
        missing = []
        d = directory
        while not os.path.isdir(d):
            missing.append(d)
            parent = os.path.dirname(d)
            if parent == d:
                break
            d = parent
        for d in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(d)
            self._dir_durable(os.path.dirname(d), sync)
        self._dirs.add(directory)

    def _write_temp(self, data: bytes | memoryview, sync: bool) -> str:
        self._ensure_dir(self._tmp, sync=False)
        tmp = os.path.join(self._tmp, f"{os.urandom(16).hex()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, 0o644)
        try:
            for part in data.buffers if isinstance(data, Parts) else (data,):
                view = memoryview(part).cast("B")
                while view:
                    view = view[os.write(fd, view) :]
            if sync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(fd)
        return tmp

    def _publish(self, op: str, key: str, data: bytes | memoryview, sync: bool, how: str) -> bool:
        """Write a temp file and move it to ``key`` by ``replace`` or ``link``.

        Returns False only for ``link`` onto an existing name. Retries once if a cached
        directory vanished underneath us.
        """
        final = self._path(key)
        for attempt in (1, 2):
            tmp = None
            try:
                tmp = self._write_temp(data, sync)
                self._ensure_dir(os.path.dirname(final), sync)
                if how == "replace":
                    os.replace(tmp, final)
                    tmp = None
                else:
                    try:
                        os.link(tmp, final)
                    except FileExistsError:
                        return False
            except FileNotFoundError as e:
                self._dirs.clear()
                if attempt == 2:
                    raise _translate(e, op, final, missing_is_not_found=False) from e
                continue
            except CasstoreError:
                raise
            except OSError as e:
                if how == "link" and e.errno in (errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV):
                    raise UnsupportedError(
                        f"{op} {final}: this filesystem has no hard links, so "
                        "put_if_absent cannot be atomic here"
                    ) from e
                raise _translate(e, op, final, missing_is_not_found=False) from e
            finally:
                if tmp is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
            break
        if sync:
            _fsync_path(os.path.dirname(final), directory=True)
        else:
            with self._pending_lock:
                self._pending_files.add(final)
        return True

    # -- reads ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _opened(self, op: str, key: str) -> Iterator[tuple[int, int]]:
        """An object's open descriptor and size; OS errors translated (missing: NotFound)."""
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
            try:
                st = os.fstat(fd)
                if not stat_mod.S_ISREG(st.st_mode):
                    raise NotFoundError(errno.ENOENT, f"object not found: {path}")
                yield fd, st.st_size
            finally:
                os.close(fd)
        except CasstoreError:
            raise
        except OSError as e:
            raise _translate(e, op, path) from e

    def _read(self, op: str, key: str, start: int = 0, end: int | None = None) -> bytes:
        parts = []
        with self._opened(op, key) as (fd, size):
            stop = size if end is None else min(end, size)
            offset = start
            while offset < stop:
                part = os.pread(fd, stop - offset, offset)
                if not part:
                    break
                parts.append(part)
                offset += len(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        s, e = check_range(start, end)
        return self._read("get", key, s, e)

    def get_into(self, key: str, buffer: bytearray | memoryview) -> int:
        out = memoryview(buffer).cast("B")
        with self._opened("get", key) as (fd, size):
            if size > len(out):
                return size
            done = 0
            while done < size:
                n = os.preadv(fd, [out[done:size]], done)
                if n == 0:
                    break  # truncated underneath us: report what is there
                done += n
            return done

    def get_with_token(self, key: str) -> tuple[bytes, str]:
        data = self._read("get", key)
        return data, content_token(data)

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = os.stat(path)
        except OSError as e:
            raise _translate(e, "stat", path) from e
        if not stat_mod.S_ISREG(st.st_mode):
            raise NotFoundError(errno.ENOENT, f"object not found: {path}")
        return ObjectInfo(key, st.st_size, st.st_mtime)

    def exists(self, key: str) -> bool:
        path = self._path(key)
        try:
            return stat_mod.S_ISREG(os.stat(path).st_mode)
        except FileNotFoundError:
            return False
        except OSError as e:
            if e.errno == errno.ENOTDIR:
                return False
            raise _translate(e, "stat", path) from e

    def exists_many(self, keys: Iterable[str]) -> set[str]:
        # a local stat costs microseconds: a thread pool would only add overhead
        return {k for k in keys if self.exists(k)}

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        return {k: self.get(k) for k in keys}

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        check_prefix(prefix)
        dir_part, _, name_part = prefix.rpartition("/")
        base = os.path.join(self.root, *dir_part.split("/")) if dir_part else self.root
        return self._walk(base, f"{dir_part}/" if dir_part else "", name_part, prefix, top=True)

    def _walk(
        self, directory: str, key_base: str, name_prefix: str, prefix: str, *, top: bool = False
    ) -> Iterator[ObjectInfo]:
        try:
            with os.scandir(directory) as it:
                entries = [e for e in it if e.name.startswith(name_prefix)]
        except (FileNotFoundError, NotADirectoryError):
            return  # a genuinely missing directory holds no objects
        except OSError as e:
            raise _translate(e, "list", directory, missing_is_not_found=False) from e
        for entry in entries:
            key = key_base + entry.name
            if not key_base and entry.name in RESERVED_DIRS and not prefix.startswith(entry.name):
                continue
            try:
                is_dir = entry.is_dir()
                st = None if is_dir or not entry.is_file() else entry.stat()
            except FileNotFoundError:
                continue  # deleted while we listed: it is genuinely gone
            except OSError as e:
                raise _translate(e, "list", entry.path, missing_is_not_found=False) from e
            if is_dir:
                yield from self._walk(entry.path, f"{key}/", "", prefix)
            elif st is not None:
                yield ObjectInfo(key, st.st_size, st.st_mtime)

    # -- writes --------------------------------------------------------------------------
    def put(self, key: str, data: bytes | memoryview, *, sync: bool = True) -> None:
        self._publish("put", key, data, sync, "replace")

    def put_if_absent(self, key: str, data: bytes | memoryview, *, sync: bool = True) -> bool:
        # Fast path: an existing object stays "existed" whatever happens next, so this check
        # can only save work, never publish anything.
        if os.path.lexists(self._path(key)):
            return False
        return self._publish("put_if_absent", key, data, sync, "link")

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        """An exclusive flock on a per-key lock file; the kernel drops it if we die."""
        self._ensure_dir(self._locks, sync=False)
        import hashlib  # here, not at import: reading commands take no lock

        name = os.path.join(self._locks, hashlib.sha256(key.encode()).hexdigest()[:40])
        fd = os.open(name, os.O_RDWR | os.O_CREAT | _O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def replace_if_match(self, key: str, data: bytes, token: str | None) -> str:
        path = self._path(key)
        try:
            with self._locked(key):
                try:
                    current: str | None = content_token(self._read("replace_if_match", key))
                except NotFoundError:
                    current = None
                if current != token:
                    raise ConflictError(
                        f"compare-and-swap failed on {path}: expected token {token!r}, "
                        f"found {current!r}"
                    )
                # token None: link, so a concurrent put_if_absent (which takes no lock)
                # cannot be overwritten.
                how = "link" if token is None else "replace"
                if not self._publish("replace_if_match", key, data, True, how):
                    raise ConflictError(f"compare-and-swap failed on {path}: created meanwhile")
        except CasstoreError:
            raise
        except OSError as e:
            raise _translate(e, "replace_if_match", path, missing_is_not_found=False) from e
        return content_token(data)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            os.unlink(path)
        except OSError as e:
            if e.errno in _NOT_AN_OBJECT:
                return
            raise _translate(e, "delete", path) from e
        with self._pending_lock:
            self._pending_dirs.add(os.path.dirname(path))

    # -- durability ----------------------------------------------------------------------
    def flush(self) -> None:
        """fsync every file written with ``sync=False`` since the last flush, then their
        directories, in a small thread pool."""
        with self._pending_lock:
            files, dirs = self._pending_files, self._pending_dirs
            self._pending_files, self._pending_dirs = set(), set()
            if (files or dirs) and self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(8, thread_name_prefix="casstore-fsync")
            pool = self._pool
        if not files and not dirs:
            return
        assert pool is not None
        dirs |= {os.path.dirname(f) for f in files}
        try:
            list(pool.map(lambda f: _fsync_path(f, directory=False), files))
            list(pool.map(lambda d: _fsync_path(d, directory=True), dirs))
        except OSError as e:
            with self._pending_lock:  # keep them pending so a later flush tries again
                self._pending_files |= files
                self._pending_dirs |= dirs
            raise _translate(e, "flush", self.root, missing_is_not_found=False) from e

    def close(self) -> None:
        self.flush()
        with self._pending_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown()
