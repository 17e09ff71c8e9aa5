"""The indexes of every collection, created at start-up (idempotent).

Only index kinds that both MongoDB and the local store support: single and compound,
unique. No TTL, partial or sparse indexes: expiry is the application's job.
"""

from __future__ import annotations

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from services.core.store.client import Document
from services.core.store.devices import migrate_device_ids
from services.core.store.directory import build_contact_directory
from services.core.store.keys import migrate_account_keys

INDEXES: dict[str, list[IndexModel]] = {
    "api_keys": [
        IndexModel([("hash", ASCENDING)], unique=True, name="hash"),
        IndexModel([("account_id", ASCENDING)], name="account"),
    ],
    "apps": [IndexModel([("account_id", ASCENDING)], name="account")],
    # `devices` has only `_id`, `{app_id}:{token_hash}`: a token's device is read by `_id`,
    # a contact's devices through the contact directory (`contact_devices`).
    # `_id` + `v`: an empty entry is deleted only if unchanged since read (`directory`).
    "contact_devices": [
        IndexModel([("_id", ASCENDING), ("v", ASCENDING)], unique=True, name="version")
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
    # Pending scheduled sends, `_id` = notification id; what the due-send loop asks for.
    "schedules": [IndexModel([("due", ASCENDING)], name="due")],
}


# Indexes of earlier versions: the unique (app, token hash) index would refuse a device's
# copy under its derived `_id` while the old document exists; the (app or account, contact
# id / token hash / cellphone / email) ones served lookups the contact directory and
# `_id` reads now serve; keys are found in `api_keys` now, not by the hashes in their
# account.
OBSOLETE: dict[str, list[str]] = {
    "accounts": ["api_key_hashes"],
    "devices": ["token", "contact", "account_contact", "account_token", "cellphone", "email"],
}


async def ensure_indexes(db: AsyncDatabase[Document]) -> None:
    """Create every index that is missing, drop obsolete ones, move devices stored with a
    generated `_id` to their derived one (`migrate_device_ids`), move API keys out of their
    accounts (`migrate_account_keys`), then enter the devices stored before the contact
    directory existed in it (`build_contact_directory`)."""
    for collection, names in OBSOLETE.items():
        present = await db[collection].index_information()
        for name in names:
            if name in present:
                await db[collection].drop_index(name)
    for collection, indexes in INDEXES.items():
        await db[collection].create_indexes(indexes)
    await migrate_device_ids(db)
    await migrate_account_keys(db)
    await build_contact_directory(db)
