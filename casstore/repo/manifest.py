"""Version manifests: frozen pydantic models and their one msgpack encode/decode pair.

A manifest is the immutable record of one model version: its files (each an ordered list of
chunk digests and sizes, plus the tensors found in it) and the version metadata from the seed
requirements. It is named by the blake3 digest of its encoded bytes. Changing the encoding is
a deliberate ``FORMAT_VERSION`` bump (a golden-bytes test pins it).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

import msgpack
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from casstore.digest import DIGEST_SIZE, Digest
from casstore.errors import CorruptObjectError, InvalidInputError
from casstore.repo.keys import check_name, check_semver

FORMAT_VERSION = 1
DELTA_FORMAT_VERSION = 2
"""Manifests with delta-encoded chunks are written as format 2 (older casstore refuses them
with a clear "upgrade" error instead of misreading a store it cannot serve); all others stay
byte-identical to format 1."""
PARAMS_FORMAT_VERSION = 3
"""Manifests that record string ``params`` or ``lineage`` are written as format 3 (they may
also hold deltas); a manifest without them keeps format 1's or 2's exact bytes, so the golden
digests of older manifests do not move and older casstore refuses format 3 with "upgrade"."""
READABLE_FORMATS = (FORMAT_VERSION, DELTA_FORMAT_VERSION, PARAMS_FORMAT_VERSION)
PARAM_VALUE_MAX = 1024
INLINE_MAX = 4096  # chunks this small live inside the manifest, not as objects of their own
VersionType = Literal["release", "beta", "alpha"]
VERSION_TYPES: tuple[str, ...] = ("release", "beta", "alpha")

_CTRL = re.compile(r"[\x00-\x1f\x7f]")
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,127}")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


def check_relpath(path: str) -> str:
    """A file path inside a version: relative, '/'-separated, no '..', '.', empty or control."""
    if not isinstance(path, str) or not path or _CTRL.search(path) or "\\" in path:
        raise InvalidInputError(f"invalid file path in version: {path!r}")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # an undecodable OS file name (surrogate escapes)
        raise InvalidInputError(
            f"file name is not valid UTF-8: {path.encode('utf-8', 'backslashreplace')!r}; "
            "rename it (casstore stores names as UTF-8 text)"
        ) from None
    parts = path.split("/")
    if path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise InvalidInputError(f"file path must be relative without '.' or '..': {path!r}")
    return path


class TensorEntry(_Frozen):
    """One tensor inside a file: where its payload sits, for per-tensor diff and lazy load."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int = Field(ge=0)
    length: int = Field(ge=0)


class FileEntry(_Frozen):
    """One file of a version, as the ordered chunks that make it up."""

    path: str
    size: int = Field(ge=0)
    format: str = "raw"
    chunker: str
    chunks: tuple[tuple[bytes, int], ...]  # (32-byte blake3 digest, size) in file order
    tensors: tuple[TensorEntry, ...] = ()
    metadata: dict[str, str] = Field(default_factory=dict)
    inline: dict[bytes, bytes] = Field(default_factory=dict)  # digest -> bytes of tiny chunks
    deltas: dict[bytes, tuple[bytes, ...]] = Field(default_factory=dict)
    """Chunks stored as deltas -> their chain of bases, nearest first: GC keeps every base
    while a live version needs the delta, transfers send them, verify checks them."""

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        return check_relpath(v)

    @field_validator("chunks")
    @classmethod
    def _chunks(cls, v: tuple[tuple[bytes, int], ...]) -> tuple[tuple[bytes, int], ...]:
        for d, n in v:
            if len(d) != DIGEST_SIZE or n < 0:
                raise ValueError("chunk entries are (32-byte digest, size >= 0)")
        return v

    @field_validator("inline")
    @classmethod
    def _inline(cls, v: dict[bytes, bytes]) -> dict[bytes, bytes]:
        for d, data in v.items():
            if len(d) != DIGEST_SIZE or len(data) > INLINE_MAX:
                raise ValueError(f"inline chunks are (32-byte digest, <= {INLINE_MAX} bytes)")
        return v

    @field_validator("deltas")
    @classmethod
    def _deltas(cls, v: dict[bytes, tuple[bytes, ...]]) -> dict[bytes, tuple[bytes, ...]]:
        for d, chain in v.items():
            if len(d) != DIGEST_SIZE or not chain or any(len(b) != DIGEST_SIZE for b in chain):
                raise ValueError("delta entries are (32-byte digest, non-empty chain of digests)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> FileEntry:
        """Sizes agree: the chunks add up to the file, inline bytes and tensors fit. A reader
        trusts these numbers to place bytes, so a manifest that lies is refused whole."""
        if sum(n for _, n in self.chunks) != self.size:
            raise ValueError(f"{self.path}: chunk sizes do not add up to the file size")
        sizes = dict(self.chunks)
        for d, data in self.inline.items():
            if sizes.get(d) != len(data):
                raise ValueError(f"{self.path}: inline chunk not in the file or of another size")
        if any(d not in sizes for d in self.deltas):
            raise ValueError(f"{self.path}: delta entry for a chunk not in the file")
        if any(t.offset + t.length > self.size for t in self.tensors):
            raise ValueError(f"{self.path}: a tensor lies past the end of the file")
        return self

    def object_sizes(self) -> dict[Digest, int]:
        """Every chunk object this file needs (delta bases included) -> its decoded size."""
        out = {Digest(d): n for d, n in self.chunks if d not in self.inline}
        sizes = dict(self.chunks)
        for d, chain in self.deltas.items():
            for b in chain:
                out.setdefault(Digest(b), sizes[d])  # a base has its delta's size
        return out

    def chunk_digests(self) -> list[Digest]:
        return [Digest(d) for d, _ in self.chunks]

    def object_digests(self) -> list[Digest]:
        """Digests of the chunks stored as objects (not inline), in file order."""
        return [Digest(d) for d, _ in self.chunks if d not in self.inline]

    def chunk_offsets(self) -> list[tuple[Digest, int, int]]:
        """(digest, offset in file, size) for every chunk, in order."""
        out, pos = [], 0
        for d, n in self.chunks:
            out.append((Digest(d), pos, n))
            pos += n
        return out


class TrainingData(BaseModel):
    """What the version was trained on (seed schema; extra keys are kept)."""

    model_config = ConfigDict(frozen=True, extra="allow", defer_build=True)
    data_count: int | None = None
    data_types: tuple[str, ...] = ()
    data_quality_score: float | None = None


def check_param(name: object, value: object) -> tuple[str, str]:
    """A string hyperparameter: ``lr=3e-4``, ``optimizer=adamw`` (names as metric names)."""
    if not isinstance(name, str) or not _PARAM_NAME.fullmatch(name):
        raise InvalidInputError(
            f"invalid param name {name!r}: a letter or '_' then letters, digits, '_.-'"
        )
    if not isinstance(value, str):
        raise InvalidInputError(f"param {name}={value!r} must be text, not {type(value).__name__}")
    if _CTRL.search(value) or len(value) > PARAM_VALUE_MAX:
        raise InvalidInputError(
            f"param {name}: value must be one line of at most {PARAM_VALUE_MAX} characters"
        )
    return name, value


class Lineage(_Frozen):
    """Where a version came from: the training run and the dataset (all optional)."""

    run_id: str | None = None
    dataset: str | None = None
    dataset_version: str | None = None

    @field_validator("run_id", "dataset", "dataset_version")
    @classmethod
    def _text(cls, v: str | None) -> str | None:
        if v is not None and (not v or _CTRL.search(v) or len(v) > PARAM_VALUE_MAX):
            raise ValueError(f"must be one non-empty line of at most {PARAM_VALUE_MAX} characters")
        return v

    def is_empty(self) -> bool:
        return self.run_id is None and self.dataset is None and self.dataset_version is None


class Manifest(_Frozen):
    """An immutable model version."""

    format_version: int = FORMAT_VERSION
    model: str
    version: str  # MAJOR.MINOR.PATCH
    name: str  # {model}_v{version}_{YYYYMMDD_HHMMSS}
    created_at: dt.datetime
    created_by: str = ""
    version_type: VersionType = "release"
    performance_metrics: dict[str, float] = Field(default_factory=dict)
    training_data: TrainingData = Field(default_factory=TrainingData)
    change_log: str = ""
    tags: tuple[str, ...] = ()  # tags given at commit time; live tags are separate objects
    dependencies: tuple[str, ...] = ()
    parent: str | None = None  # semver of the version this one derives from
    files: tuple[FileEntry, ...]
    extra: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, str] = Field(default_factory=dict)  # format 3: string hyperparameters
    lineage: Lineage = Field(default_factory=Lineage)  # format 3: run id, dataset

    @field_validator("params")
    @classmethod
    def _params(cls, v: dict[str, str]) -> dict[str, str]:
        for k, x in v.items():
            try:
                check_param(k, x)
            except InvalidInputError as e:
                raise ValueError(str(e)) from None
        return v

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        return check_name("model", v)

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        return check_semver(v)

    @field_validator("parent")
    @classmethod
    def _parent(cls, v: str | None) -> str | None:
        return None if v is None else check_semver(v)

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(check_name("tag", t) for t in v)

    @field_validator("created_at")
    @classmethod
    def _utc(cls, v: dt.datetime) -> dt.datetime:
        if v.tzinfo is None:
            raise ValueError("created_at must be timezone-aware")
        return v.astimezone(dt.timezone.utc)

    @field_validator("files")
    @classmethod
    def _files(cls, v: tuple[FileEntry, ...]) -> tuple[FileEntry, ...]:
        paths = [f.path for f in v]
        if len(set(paths)) != len(paths):
            raise ValueError("duplicate file paths in version")
        return v

    @property
    def size_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def file(self, path: str) -> FileEntry:
        for f in self.files:
            if f.path == path:
                return f
        from casstore.errors import NotFoundError

        raise NotFoundError(f"version {self.name} has no file {path!r}")

    def chunk_set(self) -> set[Digest]:
        """The chunk objects this version needs in the store: its chunks (inline ones are not
        objects) and the bases of those stored as deltas."""
        out = {Digest(d) for f in self.files for d, _ in f.chunks if d not in f.inline}
        for f in self.files:
            for chain in f.deltas.values():
                out.update(Digest(b) for b in chain)
        return out

    def delta_chains(self) -> dict[Digest, tuple[Digest, ...]]:
        """Chunks stored as deltas -> their chain of bases, nearest first (every file)."""
        return {Digest(d): tuple(Digest(b) for b in chain)
                for f in self.files for d, chain in f.deltas.items()}

    def object_sizes(self) -> dict[Digest, int]:
        """Decoded size of every chunk object in :meth:`chunk_set`."""
        out: dict[Digest, int] = {}
        for f in self.files:
            out.update(f.object_sizes())
        return out

    @property
    def has_deltas(self) -> bool:
        return any(f.deltas for f in self.files)

    def all_chunks(self) -> set[Digest]:
        """Every chunk of every file, inline or not."""
        return {Digest(d) for f in self.files for d, _ in f.chunks}


def version_name(model: str, semver: str, when: dt.datetime) -> str:
    return f"{model}_v{semver}_{when.astimezone(dt.timezone.utc):%Y%m%d_%H%M%S}"


def _default(obj: object) -> object:
    if isinstance(obj, dt.datetime):
        return obj.isoformat()
    raise TypeError(f"cannot encode {type(obj).__name__}")


def encode(manifest: Manifest) -> bytes:
    """Deterministic msgpack bytes of a manifest (field order is the model's). Without deltas,
    params and lineage the bytes are exactly format 1's; with deltas the manifest is format 2,
    with params or lineage format 3 (fields left at their defaults are not written)."""
    data = manifest.model_dump(mode="python")
    if manifest.has_deltas:
        data["format_version"] = DELTA_FORMAT_VERSION
    if manifest.params:
        data["params"] = dict(sorted(manifest.params.items()))  # bytes independent of order
    else:
        del data["params"]
    if manifest.lineage.is_empty():
        del data["lineage"]
    else:
        data["lineage"] = {k: v for k, v in data["lineage"].items() if v is not None}
    if manifest.params or not manifest.lineage.is_empty():
        data["format_version"] = PARAMS_FORMAT_VERSION
    for f in data["files"]:
        if not f["deltas"]:
            del f["deltas"]
    return msgpack.packb(data, default=_default, use_bin_type=True)


def decode(raw: bytes, expected: Digest | None = None) -> Manifest:
    """Decode and validate; with ``expected``, verify the bytes' digest first."""
    if expected is not None and Digest.of(raw) != expected:
        raise CorruptObjectError(f"manifest {expected.short()} does not match its digest")
    try:
        data = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as e:
        raise CorruptObjectError(f"manifest is not valid msgpack: {e}") from e
    if not isinstance(data, dict):
        raise CorruptObjectError("manifest is not a map")
    fv = data.get("format_version")
    if fv not in READABLE_FORMATS:
        from casstore.errors import StoreFormatError

        raise StoreFormatError(
            f"manifest format {fv!r} is not supported (this casstore reads "
            f"{', '.join(map(str, READABLE_FORMATS))}); upgrade casstore"
        )
    try:
        return Manifest.model_validate(data)
    except ValidationError as e:
        raise CorruptObjectError(f"manifest does not validate: {e}") from e
