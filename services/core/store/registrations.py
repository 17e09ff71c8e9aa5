"""The `registrations` collection: the status of each tracked registration request."""

from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase

from services.core.events import FailureReason, RegistrationStatus, utc_now
from services.core.store.client import Document


class RegistrationsRepository:
    """Statuses of registration requests, by request id."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._registrations = db.registrations

    async def set_status(
        self,
        request_id: str,
        *,
        account_id: str,
        app_id: str,
        status: RegistrationStatus,
        reason: FailureReason | None,
    ) -> None:
        """Record the outcome of a registration request (idempotent)."""
        now = utc_now()
        await self._registrations.update_one(
            {"_id": request_id},
            {
                "$set": {
                    "account_id": account_id,
                    "app_id": app_id,
                    "status": status,
                    "failure_reason": reason,
                    "updated": now,
                },
                "$setOnInsert": {"created": now},
            },
            upsert=True,
        )
