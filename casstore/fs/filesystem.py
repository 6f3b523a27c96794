"""CasstoreFileSystem: a read-only fsspec filesystem over the versions of one store.

See :mod:`casstore.fs` for the URL grammar. Each instance wraps one
:class:`~casstore.Repository`; every read goes through it, so every chunk is verified.
Instances are not cached by fsspec (``cachable = False``): the store named by
``$CASSTORE_STORE`` may change between calls, and refs are re-read on every call anyway.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from fsspec.spec import AbstractFileSystem

from casstore.errors import InvalidInputError, NotFoundError, PermissionDeniedError
from casstore.fs.paths import PROTOCOL, FsPath, parse_path, strip_protocol, version_spec
from casstore.repo.catalog import Version
from casstore.repo.files import VersionFile
from casstore.repo.keys import versions_prefix
from casstore.repository import Repository
from casstore.store import ReadOnlyStore, open_store
from casstore.store.base import ObjectStore

DEFAULT_STORE = ".casstore"
_READ_ONLY = (
    "casstore:// is read-only; a commit is the way to write "
    "(casstore commit MODEL PATH..., or Repository.commit)"
)


class CasstoreFile(VersionFile):
    """The file object ``open`` returns: a seekable, verified, read-only view of one file
    of a version that fetches only the chunks a read touches."""

    def __init__(self, fs: CasstoreFileSystem, path: str, repo: Repository, v: Version,
                 relpath: str) -> None:  # fmt: skip
        super().__init__(repo.chunks, v.manifest, v.manifest.file(relpath))
        self.fs, self.path = fs, path

    @property
    def name(self) -> str:
        return f"{PROTOCOL}://{self.path}"


def _store_location(
    store: str | os.PathLike[str] | ObjectStore | Repository | None,
    fo: str | None,
    target_protocol: str | None,
) -> str | os.PathLike[str] | ObjectStore | Repository:
    if fo is not None or target_protocol is not None:
        if store is not None:
            raise InvalidInputError(
                "the store is named twice: by the chained URL (…::STORE_URL) and by the "
                "'store' option; give one"
            )
        protocol = target_protocol or "file"
        if protocol in ("file", "local"):
            return fo or "."
        return f"{protocol}://{fo}"
    if store is not None:
        return store
    return os.environ.get("CASSTORE_STORE") or DEFAULT_STORE


class CasstoreFileSystem(AbstractFileSystem):
    """Read-only view of a casstore store: models, their versions, the files in each.

    ``store`` is a store URL or path, an :class:`~casstore.store.ObjectStore` or a
    :class:`~casstore.Repository`; ``store_options`` are passed to ``open_store``. In a chained
    URL (``casstore://MODEL@VERSION/PATH::s3://bucket/prefix``) fsspec passes the store as
    ``fo``/``target_protocol``/``target_options`` instead.
    """

    protocol = PROTOCOL
    root_marker = ""
    cachable = False
    async_impl = False

    def __init__(
        self,
        store: str | os.PathLike[str] | ObjectStore | Repository | None = None,
        *,
        store_options: dict[str, Any] | None = None,
        fo: str | None = None,
        target_protocol: str | None = None,
        target_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        where = _store_location(store, fo, target_protocol)
        options = {**(target_options or {}), **(store_options or {})}
        if isinstance(where, (Repository, ObjectStore)) and options:
            raise InvalidInputError("store options given with an already open store")
        if isinstance(where, Repository):
            self.repo = where
        else:  # a read-only view of the store: no code path here can write to it
            store = where if isinstance(where, ObjectStore) else open_store(where, **options)
            self.repo = Repository(ReadOnlyStore(store))

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        return strip_protocol(str(path))

    def unstrip_protocol(self, name: str) -> str:
        return f"{PROTOCOL}://{name}"

    # -- resolving -----------------------------------------------------------------------
    def _version(self, p: FsPath) -> Version:
        assert p.model is not None and p.spec is not None
        return self.repo.get_version(p.model, version_spec(p.model, p.spec))

    def _semvers(self, model: str) -> list[str]:
        prefix = versions_prefix(model)
        found = [info.key[len(prefix) :] for info in self.repo.store.list(prefix)]
        if not found:
            raise NotFoundError(f"unknown model {model!r}")
        return sorted(found, key=lambda s: tuple(int(x) for x in s.split(".")))

    @staticmethod
    def _dir(name: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "type": "directory", "size": 0, **extra}

    @staticmethod
    def _version_info(name: str, v: Version) -> dict[str, Any]:
        return CasstoreFileSystem._dir(
            name, version=v.version, version_name=v.name, version_id=v.id.hex(),
            created=v.created_at, files=len(v.manifest.files), logical_size=v.size_bytes,
        )  # fmt: skip

    @staticmethod
    def _file_info(name: str, v: Version, size: int) -> dict[str, Any]:
        return {"name": name, "type": "file", "size": size, "version": v.version,
                "version_id": v.id.hex(), "created": v.created_at}  # fmt: skip

    def _children(self, p: FsPath, v: Version) -> list[dict[str, Any]] | None:
        """Entries directly under ``p`` inside version ``v``; None if ``p.inner`` names
        nothing in it. A file path gives a one-entry list (as fsspec's ``ls`` does)."""
        prefix = f"{p.inner}/" if p.inner else ""
        files: dict[str, int] = {}
        dirs: set[str] = set()
        for f in v.manifest.files:
            if f.path == p.inner:
                return [self._file_info(p.join(f.path), v, f.size)]
            if f.path.startswith(prefix):
                head, sep, _ = f.path[len(prefix) :].partition("/")
                if sep:
                    dirs.add(head)
                else:
                    files[head] = f.size
        if not files and not dirs:
            return None
        out = [self._dir(p.join(prefix + d)) for d in sorted(dirs)]
        out += [self._file_info(p.join(prefix + n), v, s) for n, s in sorted(files.items())]
        return out

    # -- listing -------------------------------------------------------------------------
    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        p = parse_path(path)
        if p.model is None:
            entries = [self._dir(m) for m in self.repo.models()]
        elif p.spec is None:
            entries = [self._dir(f"{p.model}@{s}") for s in self._semvers(p.model)]
        else:
            v = self._version(p)
            found = self._children(p, v)
            if found is None:
                raise NotFoundError(f"{v.name} has no file or folder {p.inner!r}")
            entries = found
        return entries if detail else [e["name"] for e in entries]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        p = parse_path(path)
        if p.model is None:
            return self._dir("")
        if p.spec is None:
            self._semvers(p.model)
            return self._dir(p.model)
        v = self._version(p)
        if not p.inner:
            return self._version_info(path, v)
        found = self._children(p, v)
        if found is None:
            raise NotFoundError(f"{v.name} has no file or folder {p.inner!r}")
        if len(found) == 1 and found[0]["name"] == path and found[0]["type"] == "file":
            return found[0]
        return self._dir(path)

    def modified(self, path: str) -> datetime:
        """When the version holding ``path`` was created (versions are immutable)."""
        created = self.info(path).get("created")
        if created is None:
            raise IsADirectoryError(f"{path}: models and the root have no modification time")
        return created

    # -- reading -------------------------------------------------------------------------
    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> CasstoreFile:
        if mode != "rb":
            raise PermissionDeniedError(f"cannot open {path!r} with mode {mode!r}: {_READ_ONLY}")
        path = self._strip_protocol(path)
        p = parse_path(path)
        if p.spec is None or not p.inner:
            raise IsADirectoryError(f"{PROTOCOL}://{path} is a directory, not a file")
        v = self._version(p)
        is_file = any(f.path == p.inner for f in v.manifest.files)
        if not is_file and self._children(p, v) is not None:
            raise IsADirectoryError(f"{PROTOCOL}://{path} is a directory, not a file")
        return CasstoreFile(self, path, self.repo, v, p.inner)

    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        """Bytes [start, end) of a file (negative offsets count from its end), fetching and
        verifying only the chunks that cover them."""
        with self._open(path) as f:
            size = f.size
            s = 0 if start is None else (max(0, size + start) if start < 0 else start)
            e = size if end is None else (max(0, size + end) if end < 0 else min(end, size))
            return f.read_range(s, e) if e > s else b""

    # -- writing is refused ----------------------------------------------------------------
    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise PermissionDeniedError(_READ_ONLY)

    mkdir = makedirs = rmdir = rm_file = _rm = rm = _refuse
    pipe_file = put_file = cp_file = mv = touch = _refuse


__all__ = ["CasstoreFile", "CasstoreFileSystem"]
