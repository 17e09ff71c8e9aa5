"""The `idempotency` collection: the notification an account's `Idempotency-Key` names, for
a window of time (retention removes a key with its notification)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.core.events import utc_now
from services.core.store.client import Document


def key_id(account_id: str, key: str) -> str:
    """The `_id` of an account's Idempotency-Key."""
    return f"{account_id}:{key}"


@dataclass(frozen=True)
class Claim:
    """The request a key was claimed for: its notification and the SHA-256 of its body
    (None for keys claimed before bodies were kept)."""

    notification_id: str
    fingerprint: str | None


class IdempotencyKeys:
    """Idempotency keys, by `key_id`."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._keys = db.idempotency

    async def claim(
        self, key: str, notification_id: str, fingerprint: str, *, window: timedelta
    ) -> Claim | None:
        """Claim `key` for the notification; None once it is claimed (or when it stays
        contended), else the claim made within the last `window` that holds it."""
        now = utc_now()
        for _ in range(2):
            try:
                await self._keys.insert_one(
                    {
                        "_id": key,
                        "notification_id": notification_id,
                        "fingerprint": fingerprint,
                        "created": now,
                    }
                )
                return None
            except DuplicateKeyError:
                seen = await self._keys.find_one({"_id": key})
                if seen is None:
                    continue
                if seen["created"] > now - window:
                    return Claim(str(seen["notification_id"]), seen.get("fingerprint"))
                # Expired: the key may name a new request (no TTL index on every store).
                await self._keys.delete_one({"_id": key, "created": seen["created"]})
        return None
