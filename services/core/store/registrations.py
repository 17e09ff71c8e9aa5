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

    async def statuses(self, account_id: str, request_ids: list[str]) -> list[Document]:
        """One `{status, failure_reason}` per id, in the order asked.

        An id with no document, or one of another account, is `Pending`: nothing about
        another tenant's requests is revealed.
        """
        found = {
            doc["_id"]: doc
            async for doc in self._registrations.find(
                {"_id": {"$in": request_ids}, "account_id": account_id}
            )
        }
        return [
            {
                "status": found[i]["status"] if i in found else "Pending",
                "failure_reason": found[i]["failure_reason"] if i in found else None,
            }
            for i in request_ids
        ]
