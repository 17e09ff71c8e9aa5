"""Apply delivery outcomes and interactions in batches: exact counters under
redelivery, invalid devices.

A send is identified by (notification id, token hash). Each ended send is recorded once
in `deliveries`; a second record of the same send is a redelivery, counted as a duplicate
and not added to the notification's counters.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from services.core import metrics
from services.core.events import DeliveryOutcome, Interaction
from services.core.store.client import Document
from services.core.store.devices import DevicesRepository
from services.core.store.notifications import TERMINAL, NotificationsRepository

_DUPLICATE_KEY = 11000


async def _record(collection: AsyncCollection[Document], documents: list[Document]) -> list[bool]:
    """Insert the documents; return, per document, whether it is new (its `_id` unseen)."""
    fresh = [True] * len(documents)
    if not documents:
        return fresh
    try:
        await collection.insert_many(documents, ordered=False)
    except BulkWriteError as exc:
        for error in exc.details.get("writeErrors", []):
            if error.get("code") != _DUPLICATE_KEY:
                raise
            fresh[error["index"]] = False
    return fresh


async def apply_outcomes(outcomes: Sequence[DeliveryOutcome], db: AsyncDatabase[Document]) -> None:
    """Count ended sends once per notification and invalidate rejected devices.

    `retry` outcomes end nothing and count nowhere but in the sender's metrics.
    """
    devices = DevicesRepository(db)
    for outcome in outcomes:
        if outcome.outcome == "invalid_token":
            since = outcome.invalid_since or outcome.answered_at
            reason = outcome.reason or "invalid_token"
            if await devices.invalidate(outcome.app_id, outcome.token_hash, reason, since):
                metrics.TOKENS_INVALIDATED.labels(outcome.provider, reason).inc()

    await devices.mark_reached(
        [(o.app_id, o.token_hash, o.answered_at) for o in outcomes if o.outcome == "success"]
    )
    ended = [
        o
        for o in outcomes
        if o.kind == "send" and o.notification_id is not None and o.outcome in TERMINAL
    ]
    if not ended:
        return
    counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
    documents = [
        {
            "_id": f"{o.notification_id}:{o.token_hash}",
            "notification_id": o.notification_id,
            "outcome": o.outcome,
            "reason": o.reason,
            "answered_at": o.answered_at,
        }
        for o in ended
    ]
    for outcome, fresh in zip(ended, await _record(db.deliveries, documents), strict=True):
        if not fresh:
            metrics.SENDS.labels(outcome.provider, "duplicate").inc()
            continue
        counter = TERMINAL[outcome.outcome]
        assert outcome.notification_id is not None
        counts[outcome.notification_id][counter] += 1
        if outcome.platform is not None:
            counts[outcome.notification_id][f"{outcome.platform}.{counter}"] += 1
    notifications = NotificationsRepository(db)
    for notification_id, increments in counts.items():
        await notifications.add_outcomes(notification_id, increments)


async def apply_interactions(
    interactions: Sequence[Interaction], db: AsyncDatabase[Document]
) -> None:
    """Count what users did with notifications, each (notification, device, type) once."""
    documents = [
        {
            "_id": f"{i.notification_id}:{i.token_hash}:{i.interaction}",
            "notification_id": i.notification_id,
            "at": i.at,
        }
        for i in interactions
    ]
    counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for interaction, fresh in zip(
        interactions, await _record(db.interactions, documents), strict=True
    ):
        if fresh:
            counts[interaction.notification_id][interaction.interaction] += 1
    notifications = NotificationsRepository(db)
    for notification_id, increments in counts.items():
        await notifications.add_outcomes(notification_id, increments)
