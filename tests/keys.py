"""EC key pairs for signing tests, as PEM files (what `openssl ecparam -genkey` makes)."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def key_pair(folder: Path, name: str, curve: str = "secp256r1") -> tuple[Path, Path]:
    """Write ``NAME.pem`` (private) and ``NAME.pub`` (public) under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(getattr(ec, curve.upper())())
    priv, pub = folder / f"{name}.pem", folder / f"{name}.pub"
    priv.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return priv, pub
