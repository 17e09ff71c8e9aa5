"""The indexes of every collection, created at start-up (idempotent).

Only index kinds that both MongoDB and the local store support: single and compound,
unique. No TTL, partial or sparse indexes: expiry is the application's job.
"""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from services.core.store.client import Document
from services.core.store.devices import migrate_device_ids

INDEXES: dict[str, list[IndexModel]] = {
    "accounts": [IndexModel([("api_key_hashes", ASCENDING)], name="api_key_hashes")],
    "apps": [IndexModel([("account_id", ASCENDING)], name="account")],
    # `_id` is `{app_id}:{token_hash}`: it is the unique key of a device.
    "devices": [
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


# Indexes of earlier versions that stand in the way: the unique (app, token hash) index
# would refuse a device's copy under its derived `_id` while the old document exists.
OBSOLETE: dict[str, list[str]] = {"devices": ["token"]}


async def ensure_indexes(db: AsyncDatabase[Document]) -> None:
    """Create every index that is missing, drop obsolete ones, and move devices stored
    with a generated `_id` to their derived one (`migrate_device_ids`)."""
    for collection, names in OBSOLETE.items():
        present = await db[collection].index_information()
        for name in names:
            if name in present:
                await db[collection].drop_index(name)
    for collection, indexes in INDEXES.items():
        await db[collection].create_indexes(indexes)
    await migrate_device_ids(db)
