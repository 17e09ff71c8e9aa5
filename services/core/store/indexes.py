"""The indexes of every collection, created at start-up (idempotent).

Only index kinds that both MongoDB and the local store support: single and compound,
unique. No TTL, partial or sparse indexes: expiry is the application's job.
"""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from services.core.store.client import Document

INDEXES: dict[str, list[IndexModel]] = {
    "accounts": [IndexModel([("api_key_hashes", ASCENDING)], name="api_key_hashes")],
    "apps": [IndexModel([("account_id", ASCENDING)], name="account")],
    "devices": [
        IndexModel([("app_id", ASCENDING), ("token_hash", ASCENDING)], unique=True, name="token"),
        IndexModel(
            [("app_id", ASCENDING), ("contact_id", ASCENDING), ("registered_at", DESCENDING)],
            name="contact",
        ),
        IndexModel(
            [("account_id", ASCENDING), ("contact_id", ASCENDING), ("registered_at", DESCENDING)],
            name="account_contact",
        ),
        IndexModel([("account_id", ASCENDING), ("token_hash", ASCENDING)], name="account_token"),
        IndexModel([("account_id", ASCENDING), ("cellphone", ASCENDING)], name="cellphone"),
        IndexModel([("account_id", ASCENDING), ("email", ASCENDING)], name="email"),
    ],
    "registrations": [IndexModel([("app_id", ASCENDING)], name="app")],
    "notifications": [
        IndexModel([("app_id", ASCENDING)], name="app"),
        # What retention asks for (the local store scans this small collection instead).
        IndexModel([("records_removed", ASCENDING), ("created", ASCENDING)], name="records"),
        IndexModel([("created", ASCENDING)], name="created"),
    ],
    # One document per (notification, device) outcome: `_id` makes redeliveries visible.
    "deliveries": [IndexModel([("notification_id", ASCENDING)], name="notification")],
    "interactions": [IndexModel([("notification_id", ASCENDING)], name="notification")],
    # Idempotency keys of send requests, `_id` = account and key.
    "idempotency": [IndexModel([("created", ASCENDING)], name="created")],
}


async def ensure_indexes(db: AsyncDatabase[Document]) -> None:
    """Create every index that is missing."""
    for collection, indexes in INDEXES.items():
        await db[collection].create_indexes(indexes)
