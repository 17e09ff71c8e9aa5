"""Apply registration verdicts: store the device, record the status, queue the callback."""

from __future__ import annotations

import logging

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from services.core import metrics
from services.core.events import (
    DeliveryOutcome,
    FailureReason,
    RegistrationResolved,
    RegistrationStatus,
    WebhookCall,
)
from services.core.store.client import Document
from services.core.store.devices import DevicesRepository
from services.core.store.registrations import RegistrationsRepository
from services.core.tokens import redact

log = logging.getLogger(__name__)


def verdict_of_verification(outcome: DeliveryOutcome) -> RegistrationResolved:
    """A validate-only send decides its registration: success stores the device, any
    other answer fails it as `DryRunSendingFailed`."""
    assert outcome.registration is not None
    if outcome.outcome == "success":
        return RegistrationResolved(
            command=outcome.registration,
            provider=outcome.provider,
            token_hash=outcome.token_hash,
            status="Success",
        )
    return RegistrationResolved(
        command=outcome.registration,
        provider=outcome.provider,
        token_hash=outcome.token_hash,
        status="Failed",
        failure_reason="DryRunSendingFailed",
    )


async def apply_registration(
    verdict: RegistrationResolved, db: AsyncDatabase[Document]
) -> WebhookCall | None:
    """Store the device of a successful registration and record the request's status.

    Returns the callback to make, if the request asked for one.
    """
    command = verdict.command
    status: RegistrationStatus = verdict.status
    reason: FailureReason | None = verdict.failure_reason
    if status == "Success":
        try:
            await DevicesRepository(db).register(command, verdict.provider, verdict.token_hash)
        except PyMongoError:
            log.exception(
                "could not store a device",
                extra={"request_id": command.request_id, "token": redact(command.token)},
            )
            status, reason = "Failed", "FailedToStoreDevice"
    if command.track:
        await RegistrationsRepository(db).set_status(
            command.request_id,
            account_id=command.account_id,
            app_id=command.app_id,
            status=status,
            reason=reason,
        )
    metrics.REGISTRATIONS.labels(status, reason or "").inc()
    log.info(
        "registration decided",
        extra={"request_id": command.request_id, "status": status, "reason": reason},
    )
    if command.callback is None:
        return None
    return WebhookCall(
        webhook_id=f"registration:{command.request_id}",
        registration_id=command.request_id,
        url=command.callback.url,
        headers=command.callback.headers,
        body={"Status": status, "Signature": command.callback.signature, "FailureReason": reason},
    )
