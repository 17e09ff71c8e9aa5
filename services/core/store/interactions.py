"""The `interactions` collection: what users did with notifications (opened, clicked,
dismissed), one record per (notification, device, interaction), written by the feedback
stage and counted once (services.core.store.records)."""

from __future__ import annotations

from collections.abc import Sequence

from pymongo.asynchronous.database import AsyncDatabase

from services.core.events import Interaction
from services.core.store.client import Document
from services.core.store.deliveries import send_id
from services.core.store.records import record_and_count


class InteractionsRepository:
    """What the feedback stage recorded of interactions."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._interactions = db.interactions

    async def record(self, interactions: Sequence[Interaction]) -> None:
        """Record the interactions and add each to its notification's counter of that
        interaction (`opened`, ...), each (notification, device, interaction) once."""
        records = [
            {
                "_id": f"{send_id(i.notification_id, i.token_hash)}:{i.interaction}",
                "notification_id": i.notification_id,
                "interaction": i.interaction,
                "at": i.at,
            }
            for i in interactions
        ]
        await record_and_count(self._interactions, records, lambda record: (record["interaction"],))
