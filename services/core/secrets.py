"""Provider credentials at rest: AES-256-GCM under a key derived from PUSHLINE_MASTER_KEY.

The master key is any string (`make run` generates 32 random bytes, base64url); HKDF-SHA256
turns it into the 256-bit AES key, so its length and alphabet do not matter. Each sealed
value carries a fresh 96-bit nonce and is bound to a context (an app id and provider) as
associated data: a ciphertext copied onto another app or provider does not decrypt.

Sealed form: `v1.` + base64url(nonce || ciphertext || tag), so a future key rotation can
tell old values from new ones.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

from services.core.errors import MasterKeyMissingError, SecretUnreadableError

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


def _derive(master_key: SecretStr) -> bytes:
    value = master_key.get_secret_value().encode()
    if not value:
        raise MasterKeyMissingError("PUSHLINE_MASTER_KEY is empty")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO)
    return hkdf.derive(value)
