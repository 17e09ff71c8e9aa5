"""The `schedules` collection: the pending scheduled sends, one document per notification
(`_id`), removed once its send has started or it was cancelled. The due-send loop reads
only this small collection, never the notifications.

A due schedule is started under a lease: a conditional update makes one resolver its
owner until `lease_until`, so two resolvers never both start it, and a resolver that dies
while starting it leaves a lease that expires and is taken over.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.core.events import SendRequest
from services.core.store.client import Document

# A lease no one holds: earlier than any time it is compared with.
_FREE = datetime(1970, 1, 1, tzinfo=UTC)


class SchedulesRepository:
    """Pending scheduled sends and their leases."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._schedules = db.schedules

    async def add(self, request: SendRequest) -> None:
        """Keep the request until its `send_at`; safe to repeat."""
        assert request.send_at is not None
        try:
            await self._schedules.insert_one(
                {
                    "_id": request.notification_id,
                    "due": request.send_at,
                    "request": request.model_dump(mode="json", exclude_none=True),
                    "owner": None,
                    "lease_until": _FREE,
                }
            )
        except DuplicateKeyError:
            return

    async def due(self, now: datetime, limit: int) -> list[str]:
        """Up to `limit` notification ids whose schedule is due and not leased, earliest
        first."""
        cursor = (
            self._schedules.find({"due": {"$lte": now}, "lease_until": {"$lte": now}}, {"_id": 1})
            .sort("due", 1)
            .limit(limit)
        )
        return [doc["_id"] async for doc in cursor]

    async def claim(
        self, notification_id: str, owner: str, now: datetime, lease: timedelta
    ) -> SendRequest | None:
        """Lease the due schedule to `owner` until `now + lease`; its request, or None when
        another owner holds it (or it is gone)."""
        result = await self._schedules.update_one(
            {"_id": notification_id, "due": {"$lte": now}, "lease_until": {"$lte": now}},
            {"$set": {"owner": owner, "lease_until": now + lease}},
        )
        if not result.modified_count:
            return None
        found = await self._schedules.find_one({"_id": notification_id, "owner": owner})
        if found is None:
            return None
        return SendRequest.model_validate(found["request"])

    async def remove(self, notification_id: str, owner: str | None = None) -> None:
        """Forget the schedule (its send started, or it was cancelled); with `owner`, only
        while that owner holds it."""
        query: Document = {"_id": notification_id}
        if owner is not None:
            query["owner"] = owner
        await self._schedules.delete_one(query)
