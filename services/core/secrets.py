"""Provider credentials at rest: AES-256-GCM under a key derived from PUSHLINE_MASTER_KEY.

The master key is at least 32 random bytes, written in base64 (standard or URL-safe,
padded or not) or hex: `make run` generates 32 bytes in base64url, `openssl rand -base64 32`
makes one too. Any other key (`check_master_key`) is refused when the settings are read:
HKDF can stretch a short key but not make it harder to guess. HKDF-SHA256 turns the key's
text into the 256-bit AES key. Each sealed value carries a fresh 96-bit nonce and is bound
to a context (an app id and provider) as associated data: a ciphertext copied onto another
app or provider does not decrypt.

Sealed form: `v1.` + base64url(nonce || ciphertext || tag), so a future key rotation can
tell old values from new ones.
"""

from __future__ import annotations

import base64
import binascii
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

from services.core.errors import MasterKeyMissingError, SecretUnreadableError

_KEY_BYTES = 32
_MAKE_ONE = "openssl rand -base64 32"
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})+")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")
# 32 random bytes take ~30 distinct values; fewer than this many is a pattern ("aaaa...").
_MIN_DISTINCT_BYTES = 16

_VERSION = "v1."
_NONCE_BYTES = 12
# Changing the info string changes every derived key: it names this one use of the master key.
_HKDF_INFO = b"pushline provider credentials v1"


class Vault:
    """Seals and opens secrets with the master key; without one, both refuse."""

    def __init__(self, master_key: SecretStr | None) -> None:
        self._aead = None if master_key is None else AESGCM(_derive(master_key))

    def seal(self, plaintext: bytes, *, context: str) -> str:
        """Encrypt `plaintext` bound to `context`.

        Raises MasterKeyMissingError when no master key is configured.
        """
        aead = self._require()
        nonce = os.urandom(_NONCE_BYTES)
        sealed = nonce + aead.encrypt(nonce, plaintext, context.encode())
        return _VERSION + base64.urlsafe_b64encode(sealed).decode("ascii")

    def open(self, sealed: str, *, context: str) -> bytes:
        """Decrypt a value `seal` produced with the same `context`.

        Raises MasterKeyMissingError without a master key, and SecretUnreadableError when the
        value was sealed under another key or context, or altered.
        """
        aead = self._require()
        if not sealed.startswith(_VERSION):
            raise SecretUnreadableError(f"unknown sealed format for {context}")
        try:
            raw = base64.urlsafe_b64decode(sealed[len(_VERSION) :])
            return aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode())
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise SecretUnreadableError(
                f"credentials of {context} do not decrypt with this master key"
            ) from exc

    def _require(self) -> AESGCM:
        if self._aead is None:
            raise MasterKeyMissingError(
                "PUSHLINE_MASTER_KEY is not set: provider credentials cannot be stored or read"
            )
        return self._aead


def check_master_key(master_key: str) -> None:
    """Raises ValueError, saying how to make a good key, unless `master_key` is the base64
    or hex text of at least 32 bytes that are not a visible pattern."""
    raw = _decoded(master_key.strip())
    if raw is None or len(raw) < _KEY_BYTES:
        raise ValueError(
            f"must be at least {_KEY_BYTES} random bytes, written in base64 (43 characters"
            f" or more) or hex (64 or more); make one with: {_MAKE_ONE}"
        )
    if len(set(raw)) < _MIN_DISTINCT_BYTES:
        raise ValueError(f"is a repeated pattern, not random bytes; make one with: {_MAKE_ONE}")


def _decoded(text: str) -> bytes | None:
    # Hex first: its digits are base64 characters too.
    if _HEX.fullmatch(text):
        return bytes.fromhex(text)
    if not _BASE64.fullmatch(text):
        return None
    unpadded = text.rstrip("=").replace("+", "-").replace("/", "_")
    try:
        return base64.urlsafe_b64decode(unpadded + "=" * (-len(unpadded) % 4))
    except (binascii.Error, ValueError):
        return None


def _derive(master_key: SecretStr) -> bytes:
    value = master_key.get_secret_value().encode()
    if not value:
        raise MasterKeyMissingError("PUSHLINE_MASTER_KEY is empty")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO)
    return hkdf.derive(value)
