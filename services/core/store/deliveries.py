"""The `deliveries` collection: one record per ended send, written by the feedback stage.

A send is identified by (notification id, token hash): `send_id`, the `_id` of its record
here and of the sender's mark of it (services.core.store.marks), through which retention
removes both.
"""

from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase

from services.core.store.client import Document


def send_id(notification_id: str | None, token_hash: str) -> str:
    """A send's id: its notification and device (the `_id` of its record and of its mark)."""
    return f"{notification_id}:{token_hash}"


class DeliveriesRepository:
    """What the feedback stage recorded of ended sends."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._deliveries = db.deliveries

    async def succeeded(self, notification_id: str, token_hash: str) -> bool:
        """Whether the provider took the notification for this device."""
        found = await self._deliveries.find_one(
            {"_id": send_id(notification_id, token_hash), "outcome": "success"}, {"_id": 1}
        )
        return found is not None
