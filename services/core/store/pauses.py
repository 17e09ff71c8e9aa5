"""The `provider_pauses` collection: until when every sender leaves a provider's quota
scope alone, after the provider answered 429 with Retry-After (services.sender.governor).

Document: `{_id: "{provider}:{scope}", until: epoch seconds}`, only ever moved later
(`$max`), so two senders' pauses keep the longer. Times are the writing process's clock.
"""

from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase

from services.core.store.client import Document


class ProviderPauses:
    """Repository of the quota scopes' pauses."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._collection = db.provider_pauses

    async def pause(self, key: str, until: float) -> None:
        """Leave the scope `key` alone until `until` (epoch seconds), unless paused longer."""
        await self._collection.update_one({"_id": key}, {"$max": {"until": until}}, upsert=True)

    async def until(self, key: str) -> float:
        """Until when the scope `key` is paused (epoch seconds; 0 when it never was)."""
        found = await self._collection.find_one({"_id": key}, {"until": 1})
        return float(found["until"]) if found else 0.0
