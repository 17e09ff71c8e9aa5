"""The `rate_buckets` collection: the shared token buckets (services.core.buckets).

Document: `{_id: the bucket's key, tat: epoch seconds}`, the time at which the bucket would
be full again. A claim is two atomic updates of that one document, no transaction: bring
an idle bucket's time up to now (`$max`), then move it later by the tokens taken, only if it
stays within the burst (a filtered `$inc`). Times are the claiming process's clock: hosts
whose clocks disagree by a second shift the bucket by a second's tokens.
"""

from __future__ import annotations

import time

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from services.core.buckets import Rate, claim
from services.core.store.client import Document


class Buckets:
    """Repository of the shared buckets."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._collection = db.rate_buckets

    async def claim(self, key: str, n: float, rate: Rate) -> float:
        """Take `n` tokens of the bucket `key` (created full): 0 when taken, else the
        seconds until `n` tokens are there."""
        now = time.time()
        await self._collection.update_one({"_id": key}, {"$max": {"tat": now}}, upsert=True)
        taken = await self._collection.find_one_and_update(
            {"_id": key, "tat": {"$lte": now + (rate.burst - n) / rate.per_second}},
            {"$inc": {"tat": n / rate.per_second}},
            return_document=ReturnDocument.AFTER,
        )
        if taken is not None:
            return 0.0
        found = await self._collection.find_one({"_id": key})
        _, wait = claim(float(found["tat"]) if found else now, now, n, rate)
        # Taken by others in between: it is there now, at the next ask.
        return max(wait, 1e-3)
