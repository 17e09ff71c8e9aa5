"""Per-send records counted once: what `deliveries` and `interactions` share.

Each record is written once, under an `_id` that names what it records (a send, or an
interaction with one); a second record of the same `_id` is a redelivery and adds nothing
to the notification's counters.

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
from collections.abc import Callable, Iterable

from pymongo.asynchronous.collection import AsyncCollection

from services.core.store.client import Document, insert_new
from services.core.store.notifications import NotificationsRepository
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


async def record_and_count(
    collection: AsyncCollection[Document], documents: list[Document], increments: Increments
) -> dict[str, Document]:
    """Record the documents (each with `notification_id`) and add each new one's
    increments to its notification exactly once.

    Returns the earlier records of the documents that were already there, by `_id`.
    Raises what the store raises; every step is safe to repeat.
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
    notifications = NotificationsRepository(collection.database)
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
