"""Registration checks: decide what becomes of a `register` command.

The outcome is either a verdict for feedback (`RegistrationResolved`) or, for apps that
verify on register, a validate-only job for the provider whose answer decides.
"""

from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase

from services.core.devices import provider_for
from services.core.events import (
    FailureReason,
    Provider,
    PushJob,
    RegisterDevice,
    RegistrationResolved,
)
from services.core.store.apps import Apps
from services.core.store.client import Document
from services.core.store.devices import DevicesRepository
from services.core.tokens import hash_token

# Longest token each provider issues, with headroom: FCM tokens run to ~200 characters,
# APNs tokens are 32-100 bytes in hex, Web Push endpoints are URLs.
MAX_TOKEN_LENGTH: dict[Provider, int] = {"fcm": 1024, "apns": 200, "webpush": 2048}


async def resolve_registration(
    command: RegisterDevice, apps: Apps, db: AsyncDatabase[Document]
) -> RegistrationResolved | PushJob:
    """Check a registration against its app and the registry.

    Fails with `DeviceTokenTooLong` for a token no provider issues, `DuplicateExists` when
    a Customer Insights caller registers a device already active for the same user (other
    dialects refresh it), and `FailedToStoreDevice` when the app is gone.
    """
    app = await apps.find(command.account_id, command.app_id)
    configured = app.configured if app else frozenset()
    chosen = provider_for(
        command.platform,
        command.token,
        web_subscription=command.subscription is not None,
        configured=configured,
    )
    provider: Provider = chosen or "fcm"
    token_hash = hash_token(command.token)

    def failed(reason: FailureReason) -> RegistrationResolved:
        return RegistrationResolved(
            command=command,
            provider=provider,
            token_hash=token_hash,
            status="Failed",
            failure_reason=reason,
        )

    if app is None or chosen is None:
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
    if command.verify or app.settings.verify_on_register:
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
