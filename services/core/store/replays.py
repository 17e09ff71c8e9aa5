"""The `replays` collection: which dead letters `pushline dlq replay` has put back.

Document: `{_id: "<dlq topic>/<partition>/<offset>", failed_at, claimed, replayed}`. A replay
claims a letter before it sends it and marks it replayed once Kafka has it, so operators
replaying at the same time never both send one letter, and a later replay skips it. A claim
whose replay died between the two steps lapses after `CLAIM_SECONDS`; the next replay takes
it over. `failed_at` (the letter's own time, ISO 8601) tells a letter from a newer one at the
same offset of a topic that was deleted and created again: the old record does not count.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.core.store.client import Document, stored_now

# Longer than a replay takes to hand one letter to Kafka (aiokafka gives up after 120 s).
CLAIM_SECONDS = 300.0


class Replays:
    """Repository of replayed dead letters."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._collection = db["replays"]

    async def claim(self, letter_id: str, failed_at: str) -> bool:
        """Whether this caller may replay the letter now: nobody replayed it, and nobody
        else is replaying it."""
        now = stored_now()
        try:
            await self._collection.insert_one(
                {"_id": letter_id, "failed_at": failed_at, "claimed": now, "replayed": None}
            )
            return True
        except DuplicateKeyError:
            pass
        taken = await self._collection.update_one(
            {
                "_id": letter_id,
                "$or": [
                    {"failed_at": {"$ne": failed_at}},
                    {"replayed": None, "claimed": {"$lt": now - timedelta(seconds=CLAIM_SECONDS)}},
                ],
            },
            {"$set": {"failed_at": failed_at, "claimed": now, "replayed": None}},
        )
        return taken.modified_count == 1

    async def done(self, letter_id: str) -> None:
        """Mark a claimed letter replayed."""
        await self._collection.update_one({"_id": letter_id}, {"$set": {"replayed": stored_now()}})

    async def release(self, letter_id: str) -> None:
        """Give up a claim whose letter was not sent, so that the next replay tries it."""
        await self._collection.delete_one({"_id": letter_id, "replayed": None})

    async def replayed(self, letters: dict[str, str]) -> dict[str, datetime]:
        """When each of `letters` (id -> its `failed_at`) was replayed; absent if never."""
        found: dict[str, datetime] = {}
        cursor = self._collection.find({"_id": {"$in": list(letters)}, "replayed": {"$ne": None}})
        async for record in cursor:
            if letters[record["_id"]] == record["failed_at"]:
                found[record["_id"]] = record["replayed"]
        return found
