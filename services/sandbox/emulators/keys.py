"""Keys the emulators generate, kept in a directory so that they survive a restart.

A sandbox app stores the emulators' credentials once; `pushline emulators` must come back
with the same keys or every stored credential would stop working.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def pkcs8_pem(key: PrivateKey) -> str:
    """The key as unencrypted PKCS#8 PEM text (the format of an APNs .p8 file)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


def rsa_key(path: Path | None = None) -> rsa.RSAPrivateKey:
    """The RSA key at `path`, created there if missing; a fresh one when no path."""
    if path is not None and path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{path} does not hold an RSA private key")
        return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if path is not None:
        _write_private(path, pkcs8_pem(key).encode())
    return key


def ec_key(path: Path | None = None) -> ec.EllipticCurvePrivateKey:
    """The P-256 key at `path`, created there if missing; a fresh one when no path."""
    if path is not None and path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path} does not hold an EC private key")
        return key
    key = ec.generate_private_key(ec.SECP256R1())
    if path is not None:
        _write_private(path, pkcs8_pem(key).encode())
    return key


def secret(path: Path | None = None, size: int = 32) -> bytes:
    """Random bytes kept at `path`, created there if missing; fresh ones when no path."""
    if path is not None and path.exists():
        return path.read_bytes()
    value = secrets.token_bytes(size)
    if path is not None:
        _write_private(path, value)
    return value
