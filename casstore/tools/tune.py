"""Measure chunking settings on a user's own files and recommend the store settings to use.

:func:`sweep` runs each chunker setting (``make_chunker`` kinds and sizes) and every chunk
encoding in :data:`casstore.repo.chunks.ENCODINGS` over the files, in memory: pieces are cut
with the public chunker API, hashed with :class:`Digest` and encoded with
:func:`encode_chunk`, exactly
as a commit would (chunks up to ``INLINE_MAX`` bytes count as manifest bytes, not objects);
nothing is written. :func:`recommend` picks a setting from the results.

Large files are sampled (see :class:`Sampling`): the figures are then estimates.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from casstore.chunking import DEFAULT_CHUNKER, make_chunker
from casstore.chunking import encodings as E
from casstore.chunking.base import MAX_WINDOW, TensorCursor
from casstore.digest import Digest
from casstore.errors import InvalidInputError
from casstore.repo.chunks import encoded_parts
from casstore.repo.inputs import FileSource
from casstore.repo.manifest import INLINE_MAX

MiB = 1 << 20
SMALL_READ = 1 * MiB
DEFAULT_ENCODINGS = ("off", E.DEFAULT_POLICY)
"""Bytes of one file's tensor pieces kept as delta bases for the next file (beyond: none)."""
"""Reads up to this size are always served from the file: that is how headers are parsed."""


@dataclass(frozen=True)
class Setting:
    """One chunker configuration, in the terms ``casstore init`` takes."""

    kind: str  # "tensor" | "fastcdc" | "fixed"
    max_chunk: int = 16 * MiB  # tensor: payload split size; fixed: the piece size
    cdc_avg: int = 64 << 10  # FastCDC average (tensor: for headers and other files)

    @property
    def chunker(self) -> str:
        return make_chunker(self.kind, max_chunk=self.max_chunk, cdc_avg=self.cdc_avg).name

    @property
    def label(self) -> str:
        if self.kind == "fixed":
            return f"fixed {_size(self.max_chunk)}"
        if self.kind == "fastcdc":
            return f"fastcdc avg {_size(self.cdc_avg)}"
        return f"tensor max {_size(self.max_chunk)}, cdc avg {_size(self.cdc_avg)}"

    def init_args(self) -> list[str]:
        """The ``casstore init`` options that select this setting."""
        args = ["--chunker", self.kind]
        if self.kind in ("tensor", "fixed"):
            args += ["--max-chunk", str(self.max_chunk)]
        if self.kind in ("tensor", "fastcdc"):
            args += ["--cdc-avg", str(self.cdc_avg)]
        return args


DEFAULT_SETTINGS: tuple[Setting, ...] = (
    Setting("tensor", 16 * MiB, 64 << 10),
    Setting("tensor", 4 * MiB, 64 << 10),
    Setting("tensor", 1 * MiB, 64 << 10),
    Setting("tensor", 16 * MiB, 16 << 10),
    Setting("tensor", 16 * MiB, 1 * MiB),
    Setting("fastcdc", cdc_avg=16 << 10),
    Setting("fastcdc", cdc_avg=64 << 10),
    Setting("fastcdc", cdc_avg=256 << 10),
    Setting("fastcdc", cdc_avg=1 * MiB),
    Setting("fastcdc", cdc_avg=4 * MiB),
    Setting("fixed", max_chunk=64 << 10),
    Setting("fixed", max_chunk=1 * MiB),
    Setting("fixed", max_chunk=4 * MiB),
    Setting("fixed", max_chunk=16 * MiB),
)


@dataclass(frozen=True)
class Sampling:
    """How much of each file is read.

    A file up to ``per_file`` bytes is read whole (exact figures). A larger one is sampled as
    equal stripes (``stripe`` bytes each, ``per_file`` bytes in all) spread evenly from its
    first to its last byte, so versions of one model are sampled at the same offsets. A piece
    counts if it *starts* inside a stripe (so big and small pieces are equally likely to count)
    and is read in full; other ranges read as zeros without touching the file. Header reads
    (up to 1 MiB) always read the file. ``total`` caps the bytes sampled over all files by
    lowering ``per_file`` (never below one stripe).
    """

    per_file: int = 512 * MiB
    stripe: int = 32 * MiB
    total: int | None = 1 << 30

    def for_files(self, n: int) -> Sampling:
        """This sampling with ``per_file`` lowered so ``n`` files fit in ``total``."""
        if self.total is None or n * self.per_file <= self.total:
            return self
        per = max(self.stripe, self.total // max(n, 1))
        return Sampling(per, self.stripe, self.total)

    def stripes(self, size: int) -> list[tuple[int, int]]:
        if size <= self.per_file:
            return [(0, size)]
        k = max(1, self.per_file // self.stripe)
        length = self.per_file // k
        if k == 1:
            return [(0, length)]
        step = (size - length) / (k - 1)
        return [(int(i * step), int(i * step) + length) for i in range(k)]


EXACT = Sampling(per_file=1 << 62, total=None)
"""Read every byte of every file."""


@dataclass
class Result:
    """What one setting with one encoding does to the (sampled) input."""

    setting: Setting
    encoding: str
    chunker: str
    logical_bytes: int  # bytes of the pieces counted
    stored_bytes: int  # encoded bytes of the distinct pieces (what the store would hold)
    objects: int  # distinct pieces = chunk objects
    pieces: int  # pieces including repeats
    seconds: float  # chunking + hashing + encoding the counted pieces, one process
    inline_bytes: int = 0  # tiny chunks kept inside manifests (in stored_bytes, not objects)

    @property
    def dedup_ratio(self) -> float:
        return self.logical_bytes / self.stored_bytes if self.stored_bytes else 1.0

    @property
    def objects_per_gb(self) -> float:
        return self.objects / (self.logical_bytes / 1e9) if self.logical_bytes else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.logical_bytes / self.seconds / 1e6 if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "setting": asdict(self.setting),
            "label": self.setting.label,
            "chunker": self.chunker,
            "encoding": self.encoding,
            "logical_bytes": self.logical_bytes,
            "stored_bytes": self.stored_bytes,
            "dedup_ratio": round(self.dedup_ratio, 4),
            "objects": self.objects,
            "objects_per_gb": round(self.objects_per_gb, 1),
            "pieces": self.pieces,
            "inline_bytes": self.inline_bytes,
            "seconds": round(self.seconds, 4),
            "MB_per_s": round(self.mb_per_s, 1),
        }


@dataclass
class SweepReport:
    files: list[dict[str, Any]]  # path, size, sampled bytes
    total_bytes: int
    sampled_bytes: int
    sampling: Sampling
    results: list[Result] = field(default_factory=list)

    @property
    def sampled(self) -> bool:
        return self.sampled_bytes < self.total_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "total_bytes": self.total_bytes,
            "sampled_bytes": self.sampled_bytes,
            "sampling": {**asdict(self.sampling), "sampled": self.sampled},
            "results": [r.to_dict() for r in self.results],
        }


class _StripedFile:
    """``read_at`` over a file that reads only its stripes (zeros elsewhere)."""

    def __init__(self, path: Path, sampling: Sampling, tail: int = MAX_WINDOW) -> None:
        self.src = FileSource(path)
        self.size = self.src.size
        self.stripes = sampling.stripes(self.size)
        self.whole = self.stripes == [(0, self.size)]
        # a piece starting in a stripe runs on past it by less than the largest piece (``tail``)
        self._real = [(a, min(self.size, b + tail)) for a, b in self.stripes]

    @property
    def sampled_bytes(self) -> int:
        return sum(b - a for a, b in self.stripes)

    def read_at(self, offset: int, length: int) -> bytes:
        if self.whole or length <= SMALL_READ:
            return self.src.read_at(offset, length)
        end = offset + length
        parts = [(max(a, offset), min(b, end)) for a, b in self._real if a < end and b > offset]
        if len(parts) == 1 and parts[0] == (offset, end):
            return self.src.read_at(offset, length)
        buf = bytearray(length)
        for a, b in parts:
            buf[a - offset : b - offset] = self.src.read_at(a, b - a)
        return bytes(buf)

    def counts(self, start: int) -> bool:
        return self.whole or any(a <= start < b for a, b in self.stripes)

    def warm(self) -> None:
        """Read the stripes once, so the first setting does not pay for cold reads alone."""
        for a, b in self._real:
            for pos in range(a, b, MAX_WINDOW):
                self.src.read_at(pos, min(MAX_WINDOW, b - pos))

    def close(self) -> None:
        self.src.close()


def collect_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Regular files among ``paths`` (folders contribute every file below them), in order."""
    from casstore.repo.inputs import collect

    return [p for _, p in collect(paths)]


def sweep(
    paths: Sequence[str | os.PathLike[str]],
    settings: Sequence[Setting] = DEFAULT_SETTINGS,
    *,
    sampling: Sampling | None = None,
    encodings: Sequence[str] = DEFAULT_ENCODINGS,
    progress: Callable[[str], None] | None = None,
) -> SweepReport:
    """Run every setting with every encoding policy over the files (in the order given, which
    is the order deltas are taken in); see the module docstring."""
    files = collect_files(paths)
    if not settings:
        raise InvalidInputError("no settings to sweep")
    sampling = (sampling or Sampling()).for_files(len(files))
    policies = {name: E.get_policy(name) for name in encodings}
    if not policies:
        raise InvalidInputError("no encodings to sweep")
    report = SweepReport([], 0, 0, sampling)
    for f in files:
        sf = _StripedFile(f, sampling)
        try:
            sf.warm()
        finally:
            sf.close()
        report.files.append(
            {"path": str(f), "size": sf.size, "sampled_bytes": sf.sampled_bytes}
        )
        report.total_bytes += sf.size
        report.sampled_bytes += sf.sampled_bytes
    for s in settings:
        if progress:
            progress(s.label)
        report.results.extend(_run_setting(files, s, sampling, policies))
    return report


def _run_setting(
    files: list[Path], setting: Setting, sampling: Sampling, policies: dict[str, E.Policy]
) -> list[Result]:
    chunker = make_chunker(setting.kind, max_chunk=setting.max_chunk, cdc_avg=setting.cdc_avg)
    largest = max(setting.max_chunk if setting.kind != "fastcdc" else 0, setting.cdc_avg * 4)
    seen: set[Digest] = set()
    logical = pieces = inline_bytes = 0
    cut_seconds = 0.0
    stored = dict.fromkeys(policies, 0)
    enc_seconds = dict.fromkeys(policies, 0.0)
    # the previous file's tensor pieces, the delta bases: where they are (read again when a
    # piece of the next file needs one: the page cache has them; memory holds none)
    prev: dict[tuple, tuple[int, int]] = {}
    prev_file: _StripedFile | None = None
    try:
        for path in files:
            sf = _StripedFile(path, sampling, largest)
            inline: set[Digest] = set()  # tiny chunks live in each version's manifest
            cur: dict[tuple, tuple[int, int]] = {}
            try:
                t = time.perf_counter()
                layout, it = chunker.split(sf.read_at, sf.size, path.name)
                tensors = TensorCursor(layout.tensors)
                pos = 0
                for piece in it:
                    n = len(piece)
                    counted = sf.counts(pos)
                    tensor = tensors.at(pos, n)
                    pos += n
                    if not counted:
                        t = time.perf_counter()  # cutting skipped ranges is not charged
                        continue
                    d = Digest.of(piece)
                    logical += n
                    pieces += 1
                    cut_seconds += time.perf_counter() - t
                    if n <= INLINE_MAX:
                        if d not in inline:
                            inline.add(d)
                            inline_bytes += n
                    elif d not in seen:
                        seen.add(d)
                        key = None
                        if tensor is not None:
                            key = (tensor.name, tensor.dtype, tuple(tensor.shape),
                                   pos - n - tensor.offset, n)
                            cur[key] = (pos - n, n)
                        where = prev.get(key) if key is not None else None
                        base = (prev_file.src.read_at(*where)
                                if where is not None and prev_file is not None else None)
                        dtype = tensor.dtype if tensor is not None else None
                        for name, policy in policies.items():
                            t0 = time.perf_counter()
                            enc = E.encode(piece, dtype, policy, base)
                            chain = (d,) if enc.delta else ()  # the header's size counts
                            stored[name] += len(encoded_parts(enc, n, chain))
                            enc_seconds[name] += time.perf_counter() - t0
                        del base, enc
                    del piece  # its window goes before the chunker reads the next one
                    t = time.perf_counter()
            except BaseException:
                sf.close()
                raise
            if prev_file is not None:
                prev_file.close()
            prev_file, prev = sf, cur
    finally:
        if prev_file is not None:
            prev_file.close()
    return [
        Result(setting, name, chunker.name, logical, stored[name] + inline_bytes, len(seen),
               pieces, cut_seconds + enc_seconds[name], inline_bytes)
        for name in policies
    ]


@dataclass(frozen=True)
class Recommendation:
    result: Result
    reason: str
    expected_stored_bytes: int  # extrapolated to all the bytes of the files
    expected_objects: int
    total_bytes: int
    is_default: bool
    warning: str = ""  # e.g. the input has no redundancy: the settings hardly differ

    def command(self, *, store: str | None = None, supported: Iterable[str] = ()) -> str:
        """The ``casstore init`` command that applies the setting.

        ``supported`` names extra init options the CLI has (e.g. ``--encoding``); an encoding
        other than the default is added only when the CLI can take it.
        """
        args = ["casstore"] + (["--store", store] if store else []) + ["init"]
        args += self.result.setting.init_args()
        if self.result.encoding != E.DEFAULT_POLICY and "--encoding" in supported:
            args += ["--encoding", self.result.encoding]
        return " ".join(args)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.result.to_dict(),
            "reason": self.reason,
            "expected_stored_bytes": self.expected_stored_bytes,
            "expected_objects": self.expected_objects,
            "total_bytes": self.total_bytes,
            "is_default": self.is_default,
            "warning": self.warning,
        }


def recommend(
    report: SweepReport, *, bytes_tolerance: float = 0.01, objects_tolerance: float = 0.05
) -> Recommendation:
    """Fewest stored bytes first; among results within ``bytes_tolerance`` of the best, the
    fewest objects (requests on a bucket); among those within ``objects_tolerance`` of that,
    the default if it is there (no change needed), else the fastest. Expected bytes and
    objects scale the sample's ratios to the whole input."""
    results = [r for r in report.results if r.logical_bytes]
    if not results:
        raise InvalidInputError("nothing was measured: the files are empty")
    def ratio(r: Result) -> float:
        return r.stored_bytes / r.logical_bytes

    best = min(map(ratio, results))
    lean = [r for r in results if ratio(r) <= best * (1 + bytes_tolerance)]
    fewest = min(r.objects_per_gb for r in lean)
    few = [r for r in lean if r.objects_per_gb <= fewest * (1 + objects_tolerance)]
    default = [r for r in few
               if r.chunker == DEFAULT_CHUNKER and r.encoding == E.DEFAULT_POLICY]
    pick = default[0] if default else max(few, key=lambda r: r.mb_per_s)
    reason = (
        f"within {bytes_tolerance:.0%} of the fewest stored bytes of {len(results)} settings "
        f"and within {objects_tolerance:.0%} of the fewest objects among those; "
        + ("the default is one of them" if default else "the fastest of them")
    )
    warning = ""
    if max(r.dedup_ratio for r in results) < 1 + bytes_tolerance:
        warning = (
            "the input has no redundancy to find (no setting deduplicates more than "
            f"{bytes_tolerance:.0%} of it: different files, or one version of a model); "
            "chunk settings make no difference here, so keep the default and tune on a "
            "series of versions"
        )
        fallback = [r for r in results
                    if r.chunker == DEFAULT_CHUNKER and r.encoding == E.DEFAULT_POLICY]
        if fallback:
            pick, reason = fallback[0], "no redundancy to find: the default"
    scale = report.total_bytes / pick.logical_bytes
    return Recommendation(
        pick,
        reason,
        round(pick.stored_bytes * scale),
        round(pick.objects * scale),
        report.total_bytes,
        pick.chunker == DEFAULT_CHUNKER and pick.encoding == E.DEFAULT_POLICY,
        warning,
    )


def _size(n: int) -> str:
    return f"{n // MiB} MiB" if n >= MiB and n % MiB == 0 else f"{n >> 10} KiB"
