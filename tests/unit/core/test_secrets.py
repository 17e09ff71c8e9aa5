from __future__ import annotations

import pytest
from pydantic import SecretStr

from services.core.errors import MasterKeyMissingError, SecretUnreadableError
from services.core.secrets import Vault

VAULT = Vault(SecretStr("a development master key"))


def test_sealed_values_open_with_the_same_key_and_context() -> None:
    sealed = VAULT.seal(b'{"private_key": "secret"}', context="app-1/apns")
    assert sealed.startswith("v1.")
    assert b"secret" not in sealed.encode()
    assert VAULT.open(sealed, context="app-1/apns") == b'{"private_key": "secret"}'


def test_every_seal_uses_a_fresh_nonce() -> None:
    assert VAULT.seal(b"x", context="c") != VAULT.seal(b"x", context="c")


@pytest.mark.parametrize(
    ("vault", "context"),
    [
        (Vault(SecretStr("another master key")), "app-1/apns"),
        (VAULT, "app-2/apns"),
        (VAULT, "app-1/fcm"),
    ],
)
def test_another_key_or_context_does_not_open(vault: Vault, context: str) -> None:
    sealed = VAULT.seal(b"secret", context="app-1/apns")
    with pytest.raises(SecretUnreadableError):
        vault.open(sealed, context=context)


def test_an_altered_value_does_not_open() -> None:
    sealed = VAULT.seal(b"secret", context="c")
    altered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    for value in (altered, "v1.not-base64!", "v2." + sealed[3:]):
        with pytest.raises(SecretUnreadableError):
            VAULT.open(value, context="c")


def test_without_a_master_key_nothing_is_sealed_or_opened() -> None:
    vault = Vault(None)
    with pytest.raises(MasterKeyMissingError, match="PUSHLINE_MASTER_KEY is not set"):
        vault.seal(b"x", context="c")
    with pytest.raises(MasterKeyMissingError):
        vault.open(VAULT.seal(b"x", context="c"), context="c")
    with pytest.raises(MasterKeyMissingError):
        Vault(SecretStr(""))
