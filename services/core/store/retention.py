"""Retention: what sends leave in the store goes once it is old enough.

A notification's per-send records (`deliveries` and `interactions`, and the sender's
`marks`) go `PUSHLINE_DELIVERY_RETENTION` after the notification was
created; the notification itself (state and counters) and its `idempotency` key go
`PUSHLINE_NOTIFICATION_RETENTION` after. The local store has no TTL index, so removal is an
application job: each feedback worker runs `Retention.run` every
`PUSHLINE_RETENTION_INTERVAL_SECONDS` (300).

The local store answers a query from an index only for `_id` equality or `_id` `$in` (a
range on `_id` is a full scan: mongo-java-server's `AbstractUniqueIndex.canHandle`), so the
records are found through their notification, never searched for. Every record is written
in a batch, and the notification lists each batch it counted (`counted_batches`). Before
counting a batch the feedback stage writes a `ledger` entry, `_id`
`"<notification id>/<batch>"`, naming the batch's records of that notification. Removal
reads the notification, its ledger entries by `_id` in chunks, and deletes the records by
`_id` (at most one feedback batch, 500, per delete); the sender's marks of a send have the
`_id` of its `deliveries` record. Only the notifications themselves are found by a query
(one scan of that small collection, indexed on MongoDB).

Several feedback workers run the job: a lease in `leases` lets one work at a time, and every
step is safe to repeat, so a run stopped midway (or a lease that lapsed) is finished by the
next run. A notification's counters are never written here.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from datetime import datetime

from pymongo import ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from services.core import metrics
from services.core.settings import Settings
from services.core.store.client import Document, stored_now
from services.core.store.leases import Lease

log = logging.getLogger(__name__)

# A run renews its lease before each ledger entry (at most 3 deletes of 500 records, about
# a second on the local store); a worker that died holding it delays the next run by at
# most this long.
LEASE_SECONDS = 120.0
# Expired notifications read per query, and ledger entries per `$in` read.
NOTIFICATIONS_PER_QUERY = 100
LEDGER_ENTRIES_PER_READ = 20
_LEASE = "retention"

# The collections whose documents a ledger entry names, by the collection it was written
# for: the sender's marks of a send carry the `_id` of the send's `deliveries` record. An
# earlier sender kept its marks in `sends` and `sending` (services.core.store.marks), which
# this empties; `sends` before `sending`, as the sender reads them.
RECORDS = {
    "deliveries": ("deliveries", "marks", "sends", "sending"),
    "interactions": ("interactions",),
}


def ledger_id(notification_id: str, batch: str) -> str:
    """The `_id` of the ledger entry of a notification's records in one batch."""
    return f"{notification_id}/{batch}"


async def write_ledger(
    collection: AsyncCollection[Document], batch: str, records: Iterable[Document]
) -> None:
    """Name the records of `batch` in `collection` (each with `notification_id`), one
    entry per notification, so that retention finds them by `_id`. Safe to repeat."""
    ids: defaultdict[str, list[str]] = defaultdict(list)
    for record in records:
        ids[record["notification_id"]].append(record["_id"])
    if not ids:
        return
    await collection.database.ledger.bulk_write(
        [
            ReplaceOne(
                {"_id": ledger_id(notification_id, batch)},
                {"notification_id": notification_id, "collection": collection.name, "ids": named},
                upsert=True,
            )
            for notification_id, named in ids.items()
        ],
        ordered=False,
    )


class Retention:
    """The retention job of one worker (`holder` names it in the lease)."""

    def __init__(self, db: AsyncDatabase[Document], settings: Settings, holder: str) -> None:
        self._db = db
        self._notifications = db.notifications
        self._ledger = db.ledger
        self._lease = Lease(db, _LEASE, holder, seconds=LEASE_SECONDS)
        self._delivery_retention = settings.delivery_retention
        self._notification_retention = settings.notification_retention

    async def run(self, now: datetime | None = None) -> bool:
        """Remove what has expired by `now` (the current time if None); False when another
        worker holds the lease, or took it over midway.

        Raises what the store raises (an outage: the next run finishes the work).
        """
        at = now or stored_now()
        if not await self._lease.take():
            return False
        try:
            return await self._expire_records(
                at - self._delivery_retention
            ) and await self._expire_notifications(at - self._notification_retention)
        finally:
            await self._lease.release()

    async def _expire_records(self, cutoff: datetime) -> bool:
        """Remove the per-send records of the notifications created before `cutoff`."""
        query = {"records_removed": None, "created": {"$lt": cutoff}}
        async for notification in self._expired(query, {"_id": 1}):
            notification_id = notification["_id"]
            if not await self._remove_records(notification_id):
                return False
            await self._notifications.update_one(
                {"_id": notification_id}, {"$set": {"records_removed": stored_now()}}
            )
        return True

    async def _expire_notifications(self, cutoff: datetime) -> bool:
        """Remove the notifications created before `cutoff` and their idempotency keys."""
        query = {"created": {"$lt": cutoff}}
        async for notification in self._expired(query, {"_id": 1, "idempotency_id": 1}):
            notification_id = notification["_id"]
            # Again: records written since the first removal (a very late redelivery)
            # can be found only through the notification.
            if not await self._remove_records(notification_id):
                return False
            key = notification.get("idempotency_id")
            if key is not None:
                await self._forget_key(key, notification_id)
            removed = await self._notifications.delete_one({"_id": notification_id})
            metrics.RETENTION_REMOVED.labels("notifications").inc(removed.deleted_count)
        return True

    async def _expired(self, query: Document, projection: Document) -> AsyncIterator[Document]:
        """The notifications `query` matches, read in pages of NOTIFICATIONS_PER_QUERY until
        none is left: the caller removes (or marks out of `query`) each one it is given."""
        while True:
            page = await (
                self._notifications.find(query, projection)
                .limit(NOTIFICATIONS_PER_QUERY)
                .to_list(None)
            )
            if not page:
                return
            for notification in page:
                yield notification

    async def _remove_records(self, notification_id: str) -> bool:
        """Delete the records of every batch the notification counted, ledger entry by
        ledger entry; False if the lease was lost on the way."""
        found = await self._notifications.find_one({"_id": notification_id}, {"counted_batches": 1})
        batches: list[str] = [] if found is None else found.get("counted_batches", [])
        for start in range(0, len(batches), LEDGER_ENTRIES_PER_READ):
            chunk = batches[start : start + LEDGER_ENTRIES_PER_READ]
            ids = [ledger_id(notification_id, batch) for batch in chunk]
            # At most LEDGER_ENTRIES_PER_READ x 500 ids in memory.
            for entry in await self._ledger.find({"_id": {"$in": ids}}).to_list(None):
                if not await self._lease.take():
                    return False
                for name in RECORDS[entry["collection"]]:
                    result = await self._db[name].delete_many({"_id": {"$in": entry["ids"]}})
                    metrics.RETENTION_REMOVED.labels(name).inc(result.deleted_count)
                # Last: until its records are gone, the entry is how a next run finds them.
                result = await self._ledger.delete_one({"_id": entry["_id"]})
                metrics.RETENTION_REMOVED.labels("ledger").inc(result.deleted_count)
        return True

    async def _forget_key(self, key_id: str, notification_id: str) -> None:
        """Delete the idempotency key if it still names this notification (an expired key
        may have been claimed again by a newer request)."""
        # Read by `_id` alone: a filter on `_id` and another field scans the local store.
        key = await self._db.idempotency.find_one({"_id": key_id}, {"notification_id": 1})
        if key is not None and key["notification_id"] == notification_id:
            result = await self._db.idempotency.delete_one({"_id": key_id})
            metrics.RETENTION_REMOVED.labels("idempotency").inc(result.deleted_count)
