"""The sender's marks of its sends, in the `marks` collection: one write before each provider
call and one after it.

A send (notification, device) is noted before its call (one unordered bulk insert, which
also tells which sends were noted before). After the call, one unordered bulk write keeps
on each note the outcome of a send that reached its device or found it gone, as published,
and removes the notes of the others, which may be made again, unless their request went
unanswered (it may have reached the device). So a note with an outcome is an ended send; a
note without one is a send that was on the wire when its sender died, or that may have
reached its device and waits for its retry.
A mark's `_id` is that of the send's `deliveries` record, through which retention removes it.

Senders before this module kept the same marks in two collections: `sending` (noted before
the call, removed when the send may be made again) and `sends` (the kept outcomes). Jobs
such a sender took but had not acknowledged come back to the new senders when the old ones
stop, so `earlier_versions` reads those collections too, one query per batch of jobs, as
long as they hold anything: retention empties them `PUSHLINE_DELIVERY_RETENTION` after the
last old sender wrote, and the fallback ends by itself.
"""

from __future__ import annotations

import time
from collections.abc import Sequence, Set

from pymongo import DeleteOne, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from services.core.events import DeliveryOutcome
from services.core.kafka import encode
from services.core.store.client import Document, insert_new
from services.core.store.deliveries import send_id

# Outcomes after which a send must not be made again: the device has the notification, or
# does not exist. A failed send may be replayed from the dead letter topic.
ENDED = frozenset({"success", "invalid_token"})

# Seconds between two looks at whether earlier versions' marks are left.
EARLIER_CHECK = 60.0


class Marks:
    """Notes and kept outcomes of sends."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._db = db
        self._marks = db.marks
        # Whether earlier versions' marks were left at the last look, and when that was.
        self._earlier_left = True
        self._earlier_checked = -EARLIER_CHECK

    async def note(self, ids: Sequence[str]) -> dict[str, DeliveryOutcome | None]:
        """Note the sends about to be made (one bulk write). Returns those noted before:
        their kept outcome if they ended, None if one was on the wire when its sender died
        (or when this batch's own attempt was cut short by an outage: it may not be a
        second send, but a duplicate is never left uncounted)."""
        fresh = await insert_new(self._marks, [{"_id": i} for i in ids])
        seen = [i for i, new in zip(ids, fresh, strict=True) if not new]
        if not seen:
            return {}
        found = {doc["_id"]: doc async for doc in self._marks.find({"_id": {"$in": seen}})}
        return {i: _kept(found.get(i)) for i in seen}

    async def settle(
        self, outcomes: Sequence[DeliveryOutcome], unanswered: Set[str] = frozenset()
    ) -> None:
        """Keep the outcomes of the ended sends on their notes and remove the others'
        notes (one bulk write), but for the sends in `unanswered`: their request may have
        reached the device without an answer (a timeout), so their notes stay as if they
        were on the wire, and whoever makes them again makes them as `repeated`."""
        writes: list[UpdateOne | DeleteOne] = []
        for o in outcomes:
            mark = send_id(o.notification_id, o.token_hash)
            if o.outcome in ENDED:
                writes.append(
                    UpdateOne({"_id": mark}, {"$set": {"outcome": encode(o).decode()}}, upsert=True)
                )
            elif mark not in unanswered:
                writes.append(DeleteOne({"_id": mark}))
        if writes:
            await self._marks.bulk_write(writes, ordered=False)

    async def earlier_versions(
        self, ids: Sequence[str]
    ) -> tuple[dict[str, DeliveryOutcome], set[str]]:
        """The sends an earlier version's sender made: the kept outcomes of those that ended,
        and the ids of those it had on the wire when it died."""
        if not ids or not await self._earlier_marks_left():
            return {}, set()
        noted = [doc["_id"] async for doc in self._db.sending.find({"_id": {"$in": list(ids)}})]
        if not noted:
            return {}, set()
        kept = {
            doc["_id"]: DeliveryOutcome.model_validate_json(doc["outcome"])
            async for doc in self._db.sends.find({"_id": {"$in": noted}})
        }
        return kept, set(noted) - kept.keys()

    async def _earlier_marks_left(self) -> bool:
        # Every send an earlier sender made was noted in `sending` first, and retention
        # removes its kept outcome from `sends` before its note.
        if time.monotonic() - self._earlier_checked >= EARLIER_CHECK:
            self._earlier_left = await self._db.sending.find_one({}, {"_id": 1}) is not None
            self._earlier_checked = time.monotonic()
        return self._earlier_left


def _kept(mark: Document | None) -> DeliveryOutcome | None:
    if mark is None or "outcome" not in mark:
        return None
    return DeliveryOutcome.model_validate_json(mark["outcome"])
