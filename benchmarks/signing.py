"""Where to compute the SHA-256 digests a model-signing signature lists: at commit, or at sign
time from verified reads; and what checking a signature costs.

    python -m benchmarks.signing --size-mb 512

Reports SHA-256 and blake3 throughput on one thread (in memory), the commit of one file into a
fresh local store, what a SHA-256 pass over the same bytes would add to that commit, the time
``Repository.sign`` takes (verified chunk reads + SHA-256 + one small write), checking the
signature (O(1): one listing, one read, one ECDSA verify) with and without ``read_data``, and
``model_signing sign key`` on the checked-out folder for comparison (the real tool hashing the
files from disk, including its ~1-3 s import).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _best(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def run(size_mb: int = 512, repeat: int = 3, workdir: Path | None = None) -> dict[str, Any]:
    import blake3
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from casstore import Repository
    from casstore.ops.signing import check_signatures, load_public_keys

    size = size_mb << 20
    data = os.urandom(size)
    gb = size / 1e9
    sha = _best(lambda: hashlib.sha256(data).digest(), repeat)
    b3 = _best(lambda: blake3.blake3(data).digest(), repeat)
    out: dict[str, Any] = {
        "size_mb": size_mb,
        "sha256_gb_s": round(gb / sha, 3),
        "blake3_1thread_gb_s": round(gb / b3, 3),
    }
    with tempfile.TemporaryDirectory(dir=workdir) as d:
        root = Path(d)
        src = root / "in" / "model.bin"
        src.parent.mkdir()
        src.write_bytes(data)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        pub = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        commits, signs = [], []
        for i in range(repeat):
            repo = Repository(str(root / f"store{i}"))
            t0 = time.perf_counter()
            repo.commit("m", [src])
            commits.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            repo.sign("m", "1.0.0", pem)
            signs.append(time.perf_counter() - t0)
        commit_s, sign_s = statistics.median(commits), statistics.median(signs)
        v = repo.get_version("m", "1.0.0")
        keys = load_public_keys([pub])
        check_s = _best(
            lambda: check_signatures(repo.ctx, "m", "1.0.0", v.id.hex(), keys), repeat
        )
        check_data_s = _best(
            lambda: check_signatures(repo.ctx, "m", "1.0.0", v.id.hex(), keys, read_data=True),
            1,
        )
        sha_file_s = _best(lambda: _sha256_file(src), repeat)
        out.update(
            commit_s=round(commit_s, 3),
            commit_gb_s=round(gb / commit_s, 3),
            sha256_pass_over_file_s=round(sha_file_s, 3),
            sha256_at_commit_adds_pct=round(100 * sha_file_s / commit_s, 1),
            sign_s=round(sign_s, 3),
            sign_gb_s=round(gb / sign_s, 3),
            check_signature_ms=round(check_s * 1000, 2),
            check_signature_read_data_s=round(check_data_s, 3),
        )
        try:
            import model_signing  # noqa: F401
        except ImportError:
            out["model_signing_cli_s"] = None
        else:
            folder = root / "checkout"
            repo.checkout("m", "1.0.0", folder)
            (root / "k.pem").write_bytes(pem)
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "model_signing", "sign", "key", "--private_key",
                 str(root / "k.pem"), "--signature", str(folder / "model.sig"), str(folder)],
                check=True, capture_output=True,
            )
            out["model_signing_cli_s"] = round(time.perf_counter() - t0, 3)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    print(json.dumps(run(a.size_mb, a.repeat), indent=2))
