"""Provider credentials of an app, exactly as the admin API takes them.

Each model's JSON is what the apps repository seals at rest and what
`Apps.credentials()` returns, decrypted, to the sender; the provider adapters take the same
models (`Provider.credentials_model`). Secret fields are left out of
`repr()`, so a credentials object in a log line or traceback shows no key; `shown()` is
the part an app may show.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import BaseModel, ConfigDict, Field, field_validator

_APPLE_ID = re.compile(r"[A-Z0-9]{10}")
# What google-auth needs to sign its token requests, and where to send them.
_SERVICE_ACCOUNT_FIELDS = ("project_id", "client_email", "private_key", "token_uri")

Text = Annotated[str, Field(min_length=1, max_length=500)]


class CredentialStatus(BaseModel):
    """What the provider last said of an app's credentials (`credential_checks`).

    `valid`: the provider's last verdict, None until one came (a check it did not answer
    leaves the verdict as it was); `checked_at`: the last check; `last_error`: why that
    check failed, in a few words that hold no secret, None when it passed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    valid: bool | None
    checked_at: datetime
    last_error: Annotated[str, Field(max_length=300)] | None = None


class ProviderCredentials(BaseModel):
    """Base of every provider's credentials model."""

    # Inputs stay out of validation errors: they are secrets.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    def shown(self) -> dict[str, Any]:
        """What of the credentials may be shown (stored beside the sealed whole); by
        default nothing."""
        return {}


class FCMCredentials(ProviderCredentials):
    """`{"service_account": {...}}`: the Google service-account JSON, as downloaded."""

    service_account: dict[str, Any] = Field(repr=False)

    @field_validator("service_account")
    @classmethod
    def _complete(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("type") != "service_account":
            raise ValueError(
                'service_account must be a service account JSON ("type": "service_account")'
            )
        missing = [
            name
            for name in _SERVICE_ACCOUNT_FIELDS
            if not isinstance(value.get(name), str) or not value[name]
        ]
        if missing:
            raise ValueError("service_account lacks " + ", ".join(missing))
        return value

    @property
    def project_id(self) -> str:
        """The Firebase project the service account belongs to."""
        return str(self.service_account["project_id"])

    def shown(self) -> dict[str, Any]:
        """The service account's project."""
        return {"project_id": self.project_id}


class APNSCredentials(ProviderCredentials):
    """Token-based APNs authentication: a .p8 signing key and what it signs for."""

    team_id: str
    key_id: str
    topic: Text
    private_key: str = Field(repr=False, max_length=10_000)
    sandbox: bool = False

    @field_validator("team_id", "key_id")
    @classmethod
    def _apple_id(cls, value: str) -> str:
        if not _APPLE_ID.fullmatch(value):
            raise ValueError("must be Apple's 10-character id (A-Z, 0-9)")
        return value

    @field_validator("private_key")
    @classmethod
    def _p8_key(cls, value: str) -> str:
        # Refuse a key APNs would reject now, not at the first send.
        try:
            key = load_pem_private_key(value.encode(), password=None)
        except ValueError as exc:
            raise ValueError("private_key must be the PEM text of the .p8 key") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("private_key must be an EC P-256 key, as Apple issues them")
        return value

    def shown(self) -> dict[str, Any]:
        """All but the key."""
        return self.model_dump(include={"team_id", "key_id", "topic", "sandbox"})


class WebPushCredentials(ProviderCredentials):
    """VAPID keys (RFC 8292) and the contact subject push services may write to."""

    vapid_private_key: str = Field(repr=False, min_length=1, max_length=10_000)
    vapid_public_key: Text
    subject: Text

    @field_validator("subject")
    @classmethod
    def _contact(cls, value: str) -> str:
        if not value.startswith(("mailto:", "https://")):
            raise ValueError("subject must be a mailto: or https: URI (RFC 8292)")
        return value

    def shown(self) -> dict[str, Any]:
        """The public key and the subject."""
        return self.model_dump(include={"vapid_public_key", "subject"})
