"""Leases in the store (`leases`): a job that several workers run, done by one at a time.

A lease is one document, `_id` the job's name, naming its holder and until when it holds
it; a holder that died lets it lapse, and the next run of any worker takes it over.
"""

from __future__ import annotations

from datetime import timedelta

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.core.store.client import Document, stored_now


class Lease:
    """The lease `name` as `holder` takes it: one holder at a time, lapsing `seconds`
    after it was last taken."""

    def __init__(
        self, db: AsyncDatabase[Document], name: str, holder: str, *, seconds: float
    ) -> None:
        self._collection = db.leases
        self._name = name
        self._holder = holder
        self._seconds = seconds

    async def take(self) -> bool:
        """Take or renew the lease; False while another holder has it."""
        now = stored_now()
        held = {"holder": self._holder, "until": now + timedelta(seconds=self._seconds)}
        # `leases` holds a few documents: a filter beyond `_id` costs nothing here.
        taken = await self._collection.update_one(
            {"_id": self._name, "$or": [{"holder": self._holder}, {"until": {"$lte": now}}]},
            {"$set": held},
        )
        if taken.matched_count:
            return True
        try:
            await self._collection.insert_one({"_id": self._name, **held})
        except DuplicateKeyError:
            return False
        return True

    async def release(self) -> None:
        """Let the next run of any worker take the lease at once."""
        await self._collection.update_one(
            {"_id": self._name, "holder": self._holder}, {"$set": {"until": stored_now()}}
        )
