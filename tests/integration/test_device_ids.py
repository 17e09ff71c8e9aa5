"""Devices stored with a generated ObjectId `_id` move to their derived `_id` at start-up
(`ensure_indexes`), in batches, safely when interrupted, on the real store."""

from __future__ import annotations

import pytest
from bson import ObjectId
from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from services.core.events import utc_now
from services.core.store import devices
from services.core.store.client import Document
from services.core.store.devices import device_id, migrate_device_ids
from services.core.store.indexes import ensure_indexes
from services.core.tokens import hash_token

pytestmark = pytest.mark.integration


def stored_before(app_id: str, token: str, **fields: object) -> Document:
    """A device as an earlier version stored it: `_id` generated."""
    return {
        "_id": ObjectId(),
        "app_id": app_id,
        "account_id": "acc",
        "platform": "android",
        "provider": "fcm",
        "token": token,
        "token_hash": hash_token(token),
        "status": "active",
        "created": utc_now(),
        **fields,
    }


async def test_old_devices_move_to_their_derived_id_in_batches(
    db: AsyncDatabase[Document], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(devices, "MIGRATION_BATCH", 7)
    # The earlier unique (app, token hash) index would refuse the copies.
    await db.devices.create_indexes(
        [IndexModel([("app_id", ASCENDING), ("token_hash", ASCENDING)], unique=True, name="token")]
    )
    old = [stored_before("app-1", f"t-{i}", contact_id=f"c-{i}") for i in range(20)]
    old.append(stored_before("app-2", "t-0", status="invalid"))
    await db.devices.insert_many(old)

    await ensure_indexes(db)

    moved = {doc["_id"]: doc async for doc in db.devices.find({})}
    assert set(moved) == {device_id(d["app_id"], d["token_hash"]) for d in old}
    for before in old:
        after = moved[device_id(before["app_id"], before["token_hash"])]
        assert {k: v for k, v in after.items() if k not in ("_id", "created")} == {
            k: v for k, v in before.items() if k not in ("_id", "created")
        }
    assert "token" not in await db.devices.index_information()
    # Done once: later start-ups skip the scan.
    assert await migrate_device_ids(db) == 0


async def test_an_interrupted_move_is_finished_and_newer_copies_win(
    db: AsyncDatabase[Document],
) -> None:
    left = stored_before("app-1", "t-left")
    copied = stored_before("app-1", "t-copied", contact_id="old")
    await db.devices.insert_many([left, copied])
    # A run died after copying `t-copied` (then registered again, newer) and before
    # deleting its old document.
    newer = {
        **copied,
        "_id": device_id("app-1", copied["token_hash"]),
        "contact_id": "new",
    }
    await db.devices.insert_one(newer)

    assert await migrate_device_ids(db) == 2

    found = {doc["token"]: doc async for doc in db.devices.find({})}
    assert set(found) == {"t-left", "t-copied"}
    assert found["t-copied"]["contact_id"] == "new"
    assert found["t-left"]["_id"] == device_id("app-1", left["token_hash"])
    assert await db.devices.count_documents({}) == 2
