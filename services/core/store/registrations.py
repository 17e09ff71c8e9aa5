"""The `registrations` collection: the status of each tracked registration request."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pymongo.asynchronous.database import AsyncDatabase

from services.core.events import FailureReason, RegisterDevice, RegistrationStatus, utc_now
from services.core.store.client import Document


@dataclass(frozen=True)
class Status:
    """A registration's state as feedback recorded it."""

    status: str
    failure_reason: str | None = None


PENDING = Status("Pending")
_STATUS = {"status": 1, "failure_reason": 1}


class RegistrationsRepository:
    """Statuses of registration requests, by request id."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._registrations = db.registrations

    async def record_pending(self, commands: Sequence[RegisterDevice]) -> None:
        """Record each request as Pending, before it is published: the id is then known to
        be issued to its account, whatever the feedback stage later decides."""
        if not commands:
            return
        now = utc_now()
        await self._registrations.insert_many(
            [
                {
                    "_id": command.request_id,
                    "account_id": command.account_id,
                    "app_id": command.app_id,
                    "status": "Pending",
                    "failure_reason": None,
                    "created": now,
                    "updated": now,
                }
                for command in commands
            ]
        )

    async def forget_pending(self, request_ids: Sequence[str]) -> None:
        """Remove requests recorded Pending that were never published after all."""
        await self._registrations.delete_many(
            {"_id": {"$in": list(request_ids)}, "status": "Pending"}
        )

    async def status(self, account_id: str, request_id: str) -> Status | None:
        """The status of one of the account's requests; None for an id never issued to it."""
        document = await self._registrations.find_one(
            {"_id": request_id, "account_id": account_id}, _STATUS
        )
        return None if document is None else _status(document)

    async def statuses(self, account_id: str, app_id: str, ids: Sequence[str]) -> list[Status]:
        """The status of each request id, in the order asked; Pending for an id without a
        record of this account's app, so that the answer tells nothing of other tenants."""
        cursor = self._registrations.find(
            {"_id": {"$in": list(ids)}, "app_id": app_id, "account_id": account_id}, _STATUS
        )
        found = {d["_id"]: _status(d) for d in await cursor.to_list(None)}
        return [found.get(i, PENDING) for i in ids]

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


def _status(document: Document) -> Status:
    return Status(document.get("status", PENDING.status), document.get("failure_reason"))
