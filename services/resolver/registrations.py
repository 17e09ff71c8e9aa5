"""Registration checks: decide what becomes of a `register` command.

The outcome is either a verdict for feedback (`RegistrationResolved`) or, for apps that
verify on register, a validate-only job for the provider whose answer decides.
"""

from __future__ import annotations

import re

from pymongo.asynchronous.database import AsyncDatabase

from services.core.events import (
    FailureReason,
    Provider,
    PushJob,
    RegisterDevice,
    RegistrationResolved,
)
from services.core.store.client import Document
from services.core.store.devices import DevicesRepository
from services.core.tokens import hash_token

# Longest token each provider issues, with headroom: FCM tokens run to ~200 characters,
# APNs tokens are 32-100 bytes in hex, Web Push endpoints are URLs.
MAX_TOKEN_LENGTH: dict[Provider, int] = {"fcm": 1024, "apns": 200, "webpush": 2048}

_APNS_TOKEN = re.compile(r"^[0-9A-Fa-f]{64,200}$")


def choose_provider(command: RegisterDevice, configured: set[Provider]) -> Provider:
    """The provider that delivers to this device (ARCHITECTURE.md, "Provider choice").

    iOS goes through APNs when the token is an APNs token and the app can use APNs, else
    through FCM; Web goes through Web Push when the token is a push subscription.
    """
    if command.platform == "ios" and "apns" in configured and _APNS_TOKEN.match(command.token):
        return "apns"
    if command.platform == "web" and command.subscription is not None:
        return "webpush"
    return "fcm"


def configured_providers(app: Document) -> set[Provider]:
    """Providers the app can deliver through: its credentials, or all three in sandbox."""
    if app.get("sandbox"):
        return {"fcm", "apns", "webpush"}
    return {p for p in ("fcm", "apns", "webpush") if p in (app.get("providers") or {})}


async def resolve_registration(
    command: RegisterDevice, db: AsyncDatabase[Document]
) -> RegistrationResolved | PushJob:
    """Check a registration against its app and the registry.

    Fails with `DeviceTokenTooLong` for a token no provider issues, `DuplicateExists` when
    a Customer Insights caller registers a device already active for the same user (other
    dialects refresh it), and `FailedToStoreDevice` when the app is gone.
    """
    app = await db.apps.find_one({"_id": command.app_id, "account_id": command.account_id})
    configured = configured_providers(app) if app else set()
    provider = choose_provider(command, configured)
    token_hash = hash_token(command.token)

    def failed(reason: FailureReason) -> RegistrationResolved:
        return RegistrationResolved(
            command=command,
            provider=provider,
            token_hash=token_hash,
            status="Failed",
            failure_reason=reason,
        )

    if app is None or provider not in configured:
        return failed("FailedToStoreDevice")
    if len(command.token) > MAX_TOKEN_LENGTH[provider]:
        return failed("DeviceTokenTooLong")
    if command.source == "cij":
        existing = await DevicesRepository(db).find(command.app_id, token_hash)
        if (
            existing is not None
            and existing.get("status") == "active"
            and existing.get("contact_id") == command.contact_id
        ):
            return failed("DuplicateExists")
    if command.verify or (app.get("settings") or {}).get("verify_on_register"):
        return PushJob(
            kind="verify",
            registration=command,
            account_id=command.account_id,
            app_id=command.app_id,
            provider=provider,
            platform=command.platform,
            token=command.token,
            token_hash=token_hash,
            subscription=command.subscription,
            accepted_at=command.received_at,
        )
    return RegistrationResolved(
        command=command, provider=provider, token_hash=token_hash, status="Success"
    )
