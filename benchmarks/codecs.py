"""Candidate lossless codecs for float checkpoints, measured on real files: ratio and MB/s.

For every tensor payload (cut like casstore's tensor-aware chunker, <= 16 MiB) of a series of
checkpoints, each candidate compresses the bytes as they are ("plain") and the XOR with the same
tensor of the previous checkpoint ("xor"), then decompresses and checks the round trip byte for
byte. Candidates: zstandard on the raw bytes; numpy byte grouping + zstandard per stream (raw
when a stream does not compress); blosc2 shuffle / bytedelta / bitshuffle + zstd; numcodecs'
Blosc (c-blosc 1); ZipNN. ``python -m benchmarks.codecs DIR_OF_CHECKPOINTS ...``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

PIECE = 16 << 20
ITEM = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "F8_E4M3": 1, "F8_E5M2": 1}

Codec = tuple[Callable[[memoryview, int], bytes], Callable[[bytes, int, int], bytes]]


def _zstd(level: int = 1) -> Codec:
    import zstandard

    c = zstandard.ZstdCompressor(level=level)
    d = zstandard.ZstdDecompressor()
    return (lambda b, _i: c.compress(b)), (lambda z, _i, n: d.decompress(z, max_output_size=n))


def _grouped_zstd(level: int = 1) -> Codec:
    """Byte k of every value together, each stream zstd-1 or raw (a 1-byte flag per stream)."""
    import zstandard

    c = zstandard.ZstdCompressor(level=level)
    d = zstandard.ZstdDecompressor()

    def enc(b: memoryview, item: int) -> bytes:
        a = np.frombuffer(b, np.uint8)
        n = len(a) // item
        streams = a[: n * item].reshape(n, item).T
        out = []
        for s in streams:
            s = np.ascontiguousarray(s)
            z = c.compress(s)
            out.append(b"\x01" + len(z).to_bytes(4, "little") + z if len(z) < 0.95 * len(s)
                       else b"\x00" + len(s).to_bytes(4, "little") + s.tobytes())
        out.append(a[n * item :].tobytes())
        return b"".join(out)

    def dec(z: bytes, item: int, size: int) -> bytes:
        n = size // item
        res = np.empty((item, n), np.uint8)
        pos = 0
        mv = memoryview(z)
        for k in range(item):
            flag, ln = mv[pos], int.from_bytes(mv[pos + 1 : pos + 5], "little")
            body = mv[pos + 5 : pos + 5 + ln]
            res[k] = np.frombuffer(d.decompress(body, max_output_size=n) if flag else body,
                                   np.uint8)
            pos += 5 + ln
        return res.T.tobytes() + bytes(mv[pos:])

    return enc, dec


def _blosc2(filt: str, level: int = 1, threads: int = 2) -> Codec:
    import blosc2

    f = {"shuffle": [blosc2.Filter.SHUFFLE],
         "bytedelta": [blosc2.Filter.SHUFFLE, blosc2.Filter.BYTEDELTA],
         "bitshuffle": [blosc2.Filter.BITSHUFFLE]}[filt]

    def enc(b: memoryview, item: int) -> bytes:
        return blosc2.compress2(b, codec=blosc2.Codec.ZSTD, clevel=level, typesize=item,
                                filters=f, filters_meta=[0] * len(f), nthreads=threads,
                                splitmode=blosc2.SplitMode.ALWAYS_SPLIT)

    def dec(z: bytes, _item: int, _n: int) -> bytes:
        return blosc2.decompress2(z, nthreads=threads)

    return enc, dec


def _numcodecs_blosc(threads: int = 2) -> Codec:
    import numcodecs
    from numcodecs import blosc

    blosc.set_nthreads(threads)

    def enc(b: memoryview, item: int) -> bytes:
        a = np.frombuffer(b, f"u{item}" if len(b) % item == 0 else "u1")  # typesize from dtype
        return numcodecs.Blosc(cname="zstd", clevel=1, shuffle=numcodecs.Blosc.SHUFFLE).encode(a)

    def dec(z: bytes, _item: int, _n: int) -> bytes:
        return bytes(numcodecs.Blosc().decode(z))

    return enc, dec


def _zipnn(dtype: str) -> Codec:
    from zipnn import ZipNN

    z = ZipNN(input_format="byte", bytearray_dtype=dtype, threads=2, zstd_level=1)
    return (lambda b, _i: z.compress(bytes(b))), (lambda c, _i, _n: bytes(z.decompress(c)))


def _casstore(dtype: str, policy: str) -> Codec:
    """casstore's own encodings (what a commit stores, predictor included)."""
    from casstore.chunking import encodings as E

    p = E.get_policy(policy)

    def enc(b: memoryview, _item: int) -> bytes:
        e = E.encode(b, dtype, p)
        return bytes([e.encoding]) + b"".join(bytes(x) for x in e.parts)

    def dec(z: bytes, _item: int, n: int) -> bytes:
        return E.decode(z[0], memoryview(z)[1:], n)

    return enc, dec


def candidates(dtype: str) -> dict[str, Codec]:
    """Every candidate that can run here: blosc2, numcodecs and ZipNN are optional (not
    casstore dependencies); a missing one is listed by :func:`missing` instead."""
    zd = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}.get(dtype)
    makers: dict[str, Callable[[], Codec]] = {
        "casstore fast": lambda: _casstore(dtype, "fast"),
        "casstore max": lambda: _casstore(dtype, "max"),
        "zstd-1 raw": lambda: _zstd(1),
        "grouped+zstd-1 (numpy)": lambda: _grouped_zstd(1),
        "grouped+zstd-3 (numpy)": lambda: _grouped_zstd(3),
        "blosc2 shuffle+zstd-1 t1": lambda: _blosc2("shuffle", 1, 1),
        "blosc2 shuffle+zstd-1 t2": lambda: _blosc2("shuffle", 1, 2),
        "blosc2 bytedelta+zstd-1 t2": lambda: _blosc2("bytedelta", 1, 2),
        "blosc2 bitshuffle+zstd-1 t2": lambda: _blosc2("bitshuffle", 1, 2),
        "blosc2 shuffle+zstd-3 t2": lambda: _blosc2("shuffle", 3, 2),
        "numcodecs Blosc zstd-1 t2": lambda: _numcodecs_blosc(2),
    }
    if zd:
        makers["zipnn 0.5.4 zstd-1 t2"] = lambda: _zipnn(zd)
    out = {}
    for name, make in makers.items():
        try:
            out[name] = make()
        except ImportError as e:
            if name.startswith("casstore"):
                raise
            _MISSING[name] = f"not installed here ({e.name})"
    return out


_MISSING: dict[str, str] = {}


def missing() -> dict[str, str]:
    """Optional candidates skipped on this machine, with the reason."""
    return dict(_MISSING)


def tensor_pieces(path: Path) -> dict[str, tuple[str, bytes]]:
    """{tensor name#piece: (dtype, payload piece)} of one checkpoint file."""
    from casstore.chunking import detect_layout
    from casstore.repo.inputs import FileSource

    out = {}
    with FileSource(path) as src:
        layout = detect_layout(src.read_at, src.size, str(path))
        for t in layout.tensors:
            if t.dtype not in ITEM or t.length < 4096:
                continue
            for off in range(0, t.length, PIECE):
                n = min(PIECE, t.length - off)
                out[f"{t.name}#{off}"] = (t.dtype, src.read_at(t.offset + off, n))
    return out


def xor(a: bytes, b: bytes) -> bytes:
    return np.bitwise_xor(np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8)).tobytes()


def measure(files: list[Path], only: set[str] | None = None) -> dict:
    """Every candidate on every piece of every file, plain and XOR against the previous file
    (``only``: just these candidates)."""
    totals: dict[tuple[str, str, str], list[float]] = {}
    broken: set[str] = set()
    prev: dict[str, tuple[str, bytes]] = {}
    for path in files:
        cur = tensor_pieces(path)
        for key, (dtype, data) in cur.items():
            item = ITEM[dtype]
            variants = [("plain", data)]
            if key in prev and prev[key][0] == dtype and len(prev[key][1]) == len(data):
                variants.append(("xor", xor(data, prev[key][1])))
            for mode, buf in variants:
                for name, (enc, dec) in candidates(dtype).items():
                    if only is not None and name not in only:
                        continue
                    t0 = time.perf_counter()
                    z = enc(memoryview(buf), item)
                    t1 = time.perf_counter()
                    back = dec(z, item, len(buf))
                    t2 = time.perf_counter()
                    if bytes(back) != buf:
                        broken.add(name)
                    acc = totals.setdefault((dtype, mode, name), [0, 0, 0.0, 0.0])
                    acc[0] += len(buf)
                    acc[1] += len(z)
                    acc[2] += t1 - t0
                    acc[3] += t2 - t1
        prev = cur
    rows = []
    for (dtype, mode, name), (n, z, te, td) in sorted(totals.items()):
        rows.append({"dtype": dtype, "mode": mode, "codec": name, "bytes": int(n),
                     "ratio": round(z / n, 4), "enc_MBps": round(n / te / 1e6, 1),
                     "dec_MBps": round(n / td / 1e6, 1), "round_trip": name not in broken})
    return {"files": [str(p) for p in files], "rows": rows, "skipped": missing()}


def render(d: dict) -> list[str]:
    lines = ["| dtype | mode | codec | ratio | encode MB/s | decode MB/s | round trip |",
             "|---|---|---|---:|---:|---:|---|"]
    for r in d["rows"]:
        lines.append(f"| {r['dtype']} | {r['mode']} | {r['codec']} | {r['ratio']:.3f} | "
                     f"{r['enc_MBps']:.0f} | {r['dec_MBps']:.0f} | "
                     f"{'exact' if r['round_trip'] else 'BROKEN'} |")
    for name, why in sorted(d.get("skipped", {}).items()):
        lines.append(f"- {name}: {why}")
    return lines


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path, help="checkpoints in order")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    res = measure(a.files)
    print(json.dumps(res, indent=2) if a.json else "\n".join(render(res)))
