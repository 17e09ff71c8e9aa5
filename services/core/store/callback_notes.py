"""The `callback_notes` collection: the final callbacks being made.

A note is written before a notification's final callback is claimed and removed once Kafka
has the call (services.core.callbacks). A worker killed in between leaves it behind, and
feedback's sweep makes the call for it once the note is older than a grace. The collection
holds only the calls in the making, so the sweep's scan of it stays small.
"""

from __future__ import annotations

from datetime import datetime

from pymongo.asynchronous.database import AsyncDatabase

from services.core.events import utc_now
from services.core.store.client import Document

# Notes a sweep takes at once; the next sweep takes the rest.
SWEEP_BATCH = 100


class CallbackNotes:
    """Notes of final callbacks in the making, by notification id."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._notes = db.callback_notes

    async def open(self, notification_id: str) -> None:
        """Note that the notification's final callback is being made (now)."""
        await self._notes.update_one(
            {"_id": notification_id}, {"$set": {"at": utc_now()}}, upsert=True
        )

    async def close(self, notification_id: str) -> None:
        """The call is on Kafka, or there is none to make."""
        await self._notes.delete_one({"_id": notification_id})

    async def take_stale(self, older_than: datetime) -> list[str]:
        """Notes written before `older_than`, each renewed as it is taken (one conditional
        update each), so that another sweep does not take it again for as long."""
        stale = [
            doc["_id"]
            async for doc in self._notes.find({"at": {"$lt": older_than}}, {"_id": 1}).limit(
                SWEEP_BATCH
            )
        ]
        taken: list[str] = []
        for notification_id in stale:
            renewed = await self._notes.update_one(
                {"_id": notification_id, "at": {"$lt": older_than}}, {"$set": {"at": utc_now()}}
            )
            if renewed.modified_count:
                taken.append(notification_id)
        return taken
