"""Apply delivery outcomes and interactions in batches: exact counters under
redelivery, invalid devices.

A send is identified by (notification id, token hash). Each ended send is recorded once
in `deliveries`; a second record of the same send is a redelivery and adds nothing to the
notification's counters. When the provider answered it again (a second `answered_at`),
the device really got it twice, and the `duplicate` metric counts it; so it does for a
send the sender made again after an earlier try that may have reached the device (its
sender died with it on the wire, or its request went unanswered: `repeated`): the device
may have it twice.

Recording and counting are two writes. Every record names the batch it was written in,
and a notification keeps the ids of the batches it has counted (in the same atomic
update that adds them). A worker that died between the two writes leaves a batch of
records uncounted; the redelivery that finds those records counts their batch from the
store, once. Before counting a batch, each notification's records in it are named in the
`ledger` (services.core.store.retention), through which retention removes them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from services.core import metrics
from services.core.events import DeliveryOutcome, Interaction
from services.core.store.client import Document, insert_new
from services.core.store.deliveries import send_id
from services.core.store.devices import DevicesRepository
from services.core.store.notifications import TERMINAL, NotificationsRepository
from services.core.store.retention import write_ledger

# How old an uncounted batch must be before a redelivery counts it: a live worker counts
# its own batch within this time, one that has not is gone (or its counting failed).
UNCOUNTED_GRACE = 20.0

# The counters a record adds one to (`sent`, `android.sent`, ...).
Increments = Callable[[Document], Iterable[str]]


def _new_batch() -> str:
    # Its creation time leads, so anyone can tell how old an uncounted batch is.
    return f"{time.time():.3f}:{uuid.uuid4().hex[:12]}"


def _age(batch: str) -> float:
    return time.time() - float(batch.partition(":")[0])


async def _record_and_count(
    db: AsyncDatabase[Document],
    collection: AsyncCollection[Document],
    documents: list[Document],
    increments: Increments,
) -> dict[str, Document]:
    """Record the documents (each with `notification_id`) and add each new one's
    increments to its notification exactly once.

    Returns the earlier records of the documents that were already there, by `_id`.
    """
    batch = _new_batch()
    for document in documents:
        document["batch"] = batch
    fresh = await insert_new(collection, documents)
    # Named before counted: retention finds a notification's records through the batches
    # it counted.
    await write_ledger(
        collection, batch, [d for d, new in zip(documents, fresh, strict=True) if new]
    )
    counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for document, new in zip(documents, fresh, strict=True):
        if new:
            counts[document["notification_id"]].update(increments(document))
    notifications = NotificationsRepository(db)
    for notification_id, increment in counts.items():
        await notifications.add_outcomes(notification_id, increment, batch)
    seen = [document["_id"] for document, new in zip(documents, fresh, strict=True) if not new]
    if not seen:
        return {}
    earlier = {doc["_id"]: doc async for doc in collection.find({"_id": {"$in": seen}})}
    await _count_left_over(notifications, collection, earlier.values(), increments)
    return earlier


async def _count_left_over(
    notifications: NotificationsRepository,
    collection: AsyncCollection[Document],
    records: Iterable[Document],
    increments: Increments,
) -> None:
    """Count the batches of `records` that their writer recorded but never counted."""
    batches = {(r["notification_id"], r["batch"]) for r in records}
    for notification_id, batch in sorted(batches):
        if await notifications.counted(notification_id, batch):
            continue
        wait = UNCOUNTED_GRACE - _age(batch)
        if wait > 0:
            # Perhaps its writer is still at it: give it the time to count it itself.
            await asyncio.sleep(wait)
            if await notifications.counted(notification_id, batch):
                continue
        found = await collection.find({"notification_id": notification_id, "batch": batch}).to_list(
            None
        )
        # Its writer may have died before naming them, as it does before counting.
        await write_ledger(collection, batch, found)
        total: Counter[str] = Counter()
        for record in found:
            total.update(increments(record))
        await notifications.add_outcomes(notification_id, total, batch)


def _delivery_increments(record: Document) -> Iterable[str]:
    counter = TERMINAL[record["outcome"]]
    platform = record.get("platform")
    return (counter, f"{platform}.{counter}") if platform else (counter,)


async def apply_outcomes(outcomes: Sequence[DeliveryOutcome], db: AsyncDatabase[Document]) -> None:
    """Count ended sends once per notification and invalidate rejected devices (bulk
    writes: one per provider and reason, one for the reached devices, one for the records).

    `retry` outcomes end nothing and count nowhere but in the sender's metrics.
    """
    devices = DevicesRepository(db)
    invalid: defaultdict[tuple[str, str], list[tuple[str, str, datetime]]] = defaultdict(list)
    for outcome in outcomes:
        if outcome.outcome == "invalid_token":
            since = outcome.invalid_since or outcome.answered_at
            reason = outcome.reason or "invalid_token"
            invalid[outcome.provider, reason].append((outcome.app_id, outcome.token_hash, since))
    for (provider, reason), rejected in invalid.items():
        if changed := await devices.invalidate(rejected, reason):
            metrics.TOKENS_INVALIDATED.labels(provider, reason).inc(changed)

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
    records = [_record(o) for o in ended]
    earlier = await _record_and_count(db, db.deliveries, records, _delivery_increments)
    for outcome, record in zip(ended, records, strict=True):
        first = earlier.get(str(record["_id"]))
        # The same answer again is a redelivered message; another answer, a second send;
        # a first answer to a repeated send, one whose earlier answer died with its sender.
        if (first is None and outcome.repeated) or (
            first is not None and first["answered_at"] != _stored(outcome.answered_at)
        ):
            metrics.SENDS.labels(outcome.provider, "duplicate").inc()


def _record(outcome: DeliveryOutcome) -> Document:
    """The `deliveries` record of an ended send."""
    assert outcome.notification_id is not None
    return {
        "_id": send_id(outcome.notification_id, outcome.token_hash),
        "notification_id": outcome.notification_id,
        "outcome": outcome.outcome,
        "platform": outcome.platform,
        "reason": outcome.reason,
        "answered_at": outcome.answered_at,
    }


def _stored(at: datetime) -> datetime:
    """`at` as the store gives it back: BSON keeps milliseconds."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


async def apply_interactions(
    interactions: Sequence[Interaction], db: AsyncDatabase[Document]
) -> None:
    """Count what users did with notifications, each (notification, device, type) once."""
    records = [
        {
            "_id": f"{send_id(i.notification_id, i.token_hash)}:{i.interaction}",
            "notification_id": i.notification_id,
            "interaction": i.interaction,
            "at": i.at,
        }
        for i in interactions
    ]
    await _record_and_count(db, db.interactions, records, lambda record: (record["interaction"],))
