"""Version manifests: frozen records and their one msgpack encode/decode pair.

A manifest is the immutable record of one model version: its files (each an ordered list of
chunk digests and sizes, plus the tensors found in it) and the version metadata from the seed
requirements. It is named by the blake3 digest of its encoded bytes. Changing the encoding is
a deliberate ``FORMAT_VERSION`` bump (a golden-bytes test pins it).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Container
from typing import Annotated, Any, Literal

import msgpack
from msgspec.structs import force_setattr

from casstore.digest import DIGEST_SIZE, Digest
from casstore.errors import CorruptObjectError, InvalidInputError
from casstore.records import Extensible, Meta, Record, ValidationError, field
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


NonNegative = Annotated[int, Meta(ge=0)]


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


class TensorEntry(Record, kw_only=True):
    """One tensor inside a file: where its payload sits, for per-tensor diff and lazy load."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: NonNegative
    length: NonNegative


class FileEntry(Record, kw_only=True):
    """One file of a version, as the ordered chunks that make it up."""

    path: str
    size: NonNegative
    format: str = "raw"
    chunker: str
    chunks: tuple[tuple[bytes, int], ...]  # (32-byte blake3 digest, size) in file order
    tensors: tuple[TensorEntry, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    inline: dict[bytes, bytes] = field(default_factory=dict)  # digest -> bytes of tiny chunks
    deltas: dict[bytes, tuple[bytes, ...]] = field(default_factory=dict)
    """Chunks stored as deltas -> their chain of bases, nearest first: GC keeps every base
    while a live version needs the delta, transfers send them, verify checks them."""

    def __post_init__(self) -> None:
        """Well-formed entries whose sizes agree: the chunks add up to the file, inline bytes
        and tensors fit. A reader trusts these numbers to place bytes, so a manifest that lies
        is refused whole."""
        check_relpath(self.path)
        if any(len(d) != DIGEST_SIZE or n < 0 for d, n in self.chunks):
            raise ValueError("chunk entries are (32-byte digest, size >= 0)")
        if any(len(d) != DIGEST_SIZE or len(data) > INLINE_MAX for d, data in self.inline.items()):
            raise ValueError(f"inline chunks are (32-byte digest, <= {INLINE_MAX} bytes)")
        for d, chain in self.deltas.items():
            if len(d) != DIGEST_SIZE or not chain or any(len(b) != DIGEST_SIZE for b in chain):
                raise ValueError("delta entries are (32-byte digest, non-empty chain of digests)")
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


class _TrainingFields(Record, kw_only=True):
    data_count: int | None = None
    data_types: tuple[str, ...] = ()
    data_quality_score: float | None = None


class TrainingData(Extensible):
    """What the version was trained on: the seed schema's three fields, checked, and any other
    keys a team records, kept as given (in the manifest after the three, in their order)."""

    __slots__ = ("_extra", "_fields")

    def __init__(self, **values: Any) -> None:
        known = {k: values.pop(k) for k in _TrainingFields.__struct_fields__ if k in values}
        self._fields = _TrainingFields.parse(known)
        self._extra = values

    @classmethod
    def from_mapping(cls, data: object) -> TrainingData:
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            raise TypeError("training data must be a map with text keys")
        return cls(**data)

    @property
    def data_count(self) -> int | None:
        return self._fields.data_count

    @property
    def data_types(self) -> tuple[str, ...]:
        return self._fields.data_types

    @property
    def data_quality_score(self) -> float | None:
        return self._fields.data_quality_score

    def to_dict(self) -> dict[str, Any]:
        return {**self._fields.to_python(), **self._extra}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TrainingData) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # holds dicts, like the other records

    def __repr__(self) -> str:
        return f"TrainingData({self.to_dict()!r})"


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


class Lineage(Record, kw_only=True):
    """Where a version came from: the training run and the dataset (all optional)."""

    run_id: str | None = None
    dataset: str | None = None
    dataset_version: str | None = None

    def __post_init__(self) -> None:
        for name in ("run_id", "dataset", "dataset_version"):
            v = getattr(self, name)
            if v is not None and (not v or _CTRL.search(v) or len(v) > PARAM_VALUE_MAX):
                raise ValueError(
                    f"{name} must be one non-empty line of at most {PARAM_VALUE_MAX} characters"
                )

    def is_empty(self) -> bool:
        return self.run_id is None and self.dataset is None and self.dataset_version is None


class Manifest(Record, kw_only=True):
    """An immutable model version."""

    format_version: int = FORMAT_VERSION
    model: str
    version: str  # MAJOR.MINOR.PATCH
    name: str  # {model}_v{version}_{YYYYMMDD_HHMMSS}
    created_at: dt.datetime
    created_by: str = ""
    version_type: VersionType = "release"
    performance_metrics: dict[str, float] = field(default_factory=dict)
    training_data: TrainingData = field(default_factory=TrainingData)
    change_log: str = ""
    tags: tuple[str, ...] = ()  # tags given at commit time; live tags are separate objects
    dependencies: tuple[str, ...] = ()
    parent: str | None = None  # semver of the version this one derives from
    files: tuple[FileEntry, ...]
    extra: dict[str, Any] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)  # format 3: string hyperparameters
    lineage: Lineage = field(default_factory=Lineage)  # format 3: run id, dataset

    def __post_init__(self) -> None:
        for k, x in self.params.items():
            check_param(k, x)
        check_name("model", self.model)
        check_semver(self.version)
        if self.parent is not None:
            check_semver(self.parent)
        for t in self.tags:
            check_name("tag", t)
        if self.created_at.tzinfo is None:
            raise ValueError("created_at must be timezone-aware")
        if self.created_at.tzinfo is not dt.timezone.utc:
            force_setattr(self, "created_at", self.created_at.astimezone(dt.timezone.utc))
        paths = [f.path for f in self.files]
        if len(set(paths)) != len(paths):
            raise ValueError("duplicate file paths in version")

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


def verified_inline(manifest: Manifest, skip: Container[Digest] = ()) -> dict[Digest, memoryview]:
    """The inline chunks of a version not in ``skip``, each checked against its digest
    (CorruptObjectError names the version and file of one that does not match)."""
    out: dict[Digest, memoryview] = {}
    for f in manifest.files:
        for d, data in f.inline.items():
            digest = Digest(d)
            if digest in out or digest in skip:
                continue
            if Digest.of(data) != digest:
                raise CorruptObjectError(
                    f"version {manifest.name}: inline chunk {digest.short()} of "
                    f"{f.path} does not match its digest"
                )
            out[digest] = memoryview(data)
    return out


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
    data = manifest.to_python()
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
        return Manifest.parse(data)
    except ValidationError as e:
        raise CorruptObjectError(f"manifest does not validate: {e}") from e
