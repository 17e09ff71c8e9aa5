"""Registration checks: decide what becomes of a `register` command.

The outcome is either a verdict for feedback (`RegistrationResolved`) or, for apps that
verify on register, a validate-only job for the provider whose answer decides. A cleanup
of a contact's devices becomes one cleanup per device (`device_cleanups`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from pymongo.asynchronous.database import AsyncDatabase

from services.core.devices import provider_for, token_problem
from services.core.events import (
    CleanupDevices,
    FailureReason,
    PushJob,
    RegisterDevice,
    RegistrationResolved,
)
from services.core.providers import registry
from services.core.store.apps import Apps
from services.core.store.client import Document
from services.core.store.devices import Delivery, DevicesRepository
from services.core.store.directory import devices_carrying
from services.core.tokens import hash_token


async def resolve_registration(
    command: RegisterDevice, apps: Apps, db: AsyncDatabase[Document], *, allow_private: bool
) -> RegistrationResolved | PushJob:
    """Check a registration against its app and the registry.

    A token the app already has keeps its platform, provider and subscription, whatever the
    command says or its token's shape suggests; the verdict carries the command with them.

    Fails with the reason of `token_problem` for a token its provider does not issue
    (`DeviceTokenTooLong` when too long), `DuplicateExists` when a Customer Insights caller
    registers a device already active for the same user (other dialects refresh it), and
    `FailedToStoreDevice` when the app is gone. `allow_private` allows plain-http Web Push
    endpoints, as sandbox apps always do.
    """
    app = await apps.find(command.account_id, command.app_id)
    token_hash = hash_token(command.token)
    existing = await DevicesRepository(db).find(command.app_id, token_hash)
    chosen: str | None
    if existing is not None:
        # One registry whatever the door: a token the app has keeps how it is reached,
        # and the command only adds who it belongs to.
        kept = Delivery.of(existing)
        command = command.model_copy(
            update={"platform": kept.platform, "subscription": kept.subscription}
        )
        chosen = kept.provider if app is not None and kept.provider in app.configured else None
    else:
        chosen = provider_for(
            command.platform,
            command.token,
            web_subscription=command.subscription is not None,
            configured=app.configured if app else frozenset(),
        )
    # A failed registration names the provider a device of no provider would have had.
    provider = chosen or registry.names()[0]

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
    problem = token_problem(
        provider, command.token, command.subscription, allow_http=allow_private or app.sandbox
    )
    if problem is not None:
        return failed(problem.reason)
    if (
        command.source == "cij"
        and existing is not None
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


async def device_cleanups(
    command: CleanupDevices, db: AsyncDatabase[Document]
) -> AsyncIterator[CleanupDevices]:
    """The cleanup as feedback applies it: one naming a token as it is; one of a contact's
    devices as one cleanup per device of the contact under the app (found through the
    contact directory), each naming the device's token and the contact.

    Keyed by its device, each is applied in order with the device's other events, so a
    device re-associated meanwhile is kept (the contact no longer matches) and the
    directory has one writer per device.
    """
    if command.token is not None or command.contact_id is None:
        yield command
        return
    async for device in devices_carrying(
        db,
        "contact_id",
        [command.contact_id],
        account_id=command.account_id,
        app_ids=[command.app_id],
        projection={"token": 1},
    ):
        yield command.model_copy(update={"token": device["token"]})
