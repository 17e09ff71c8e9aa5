"""The `deliveries` collection: one record per ended send, written by the feedback stage
and counted once in its notification's counters (services.core.store.records).

A send is identified by (notification id, token hash): `send_id`, the `_id` of its record
here and of the sender's mark of it (services.core.store.marks), through which retention
removes both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Literal

from pymongo.asynchronous.database import AsyncDatabase

from services.core.events import DeliveryOutcome
from services.core.store.client import Document
from services.core.store.notifications import TERMINAL
from services.core.store.records import record_and_count

# What recording an ended send found recorded of it before: the same provider answer (its
# outcome came again) or another one (the provider answered the send twice).
Earlier = Literal["same_answer", "other_answer"]


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

    async def record(self, ended: Sequence[DeliveryOutcome]) -> list[Earlier | None]:
        """Record the ended sends (outcomes of a notification's sends, in TERMINAL) and add
        each to its notification's counters (`sent`, `android.sent`, ...) once.

        Returns, per outcome, what was recorded of its send before, None for a first
        record. Raises what the store raises; safe to repeat.
        """
        records = [_record(outcome) for outcome in ended]
        earlier = await record_and_count(self._deliveries, records, _increments)
        found: list[Earlier | None] = []
        for outcome, record in zip(ended, records, strict=True):
            first = earlier.get(str(record["_id"]))
            if first is None:
                found.append(None)
            elif first["answered_at"] == _stored(outcome.answered_at):
                found.append("same_answer")
            else:
                found.append("other_answer")
        return found


def _record(outcome: DeliveryOutcome) -> Document:
    """The record of an ended send."""
    assert outcome.notification_id is not None
    return {
        "_id": send_id(outcome.notification_id, outcome.token_hash),
        "notification_id": outcome.notification_id,
        "outcome": outcome.outcome,
        "platform": outcome.platform,
        "reason": outcome.reason,
        "answered_at": outcome.answered_at,
    }


def _increments(record: Document) -> Iterable[str]:
    counter = TERMINAL[record["outcome"]]
    platform = record.get("platform")
    return (counter, f"{platform}.{counter}") if platform else (counter,)


def _stored(at: datetime) -> datetime:
    """`at` as the store gives it back: BSON keeps milliseconds."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)
