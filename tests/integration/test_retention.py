"""Retention against the real store: per-send records go after PUSHLINE_DELIVERY_RETENTION,
notifications (and their idempotency keys) after PUSHLINE_NOTIFICATION_RETENTION, found
through the notifications and the ledger, never by scanning the record collections."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from pymongo.asynchronous.database import AsyncDatabase

from services.core.events import DeliveryOutcome, FanoutCompleted, Interaction, utc_now
from services.core.settings import Settings
from services.core.store.client import Document
from services.core.store.notifications import NotificationsRepository
from services.core.store.retention import LEASE_SECONDS, NOTIFICATIONS_PER_QUERY, Retention
from services.feedback.deliveries import apply_interactions, apply_outcomes
from tests.integration import processes

pytestmark = pytest.mark.integration

RECORDS = ("deliveries", "marks", "sends", "sending", "interactions")
NOW = utc_now()
# Outcomes per feedback batch in these tests: several batches, several ledger entries.
BATCH = 4


def removed(collection: str) -> float:
    return (
        REGISTRY.get_sample_value("pushline_retention_removed_total", {"collection": collection})
        or 0.0
    )


async def sent(
    db: AsyncDatabase[Document], notification_id: str, devices: int, age: timedelta
) -> list[str]:
    """A notification created `age` before NOW, sent to `devices` devices, each answered
    (the sender's marks, feedback's records) and opened; the ids of its sends."""
    await db.notifications.insert_one(
        {
            "_id": notification_id,
            "account_id": "acct",
            "app_id": "app",
            "state": "resolving",
            "counters": dict.fromkeys(("targeted", "sent", "failed", "invalid", "opened"), 0),
            "by_platform": {},
            "created": NOW - age,
            "updated": NOW - age,
        }
    )
    await NotificationsRepository(db).fanout_completed(
        FanoutCompleted(notification_id=notification_id, jobs=devices, by_platform={"ios": devices})
    )
    hashes = [f"{i:064x}" for i in range(devices)]
    ids = [f"{notification_id}:{h}" for h in hashes]
    # The sender notes each send before its call and keeps its outcome after; so did an
    # earlier sender, in two collections (services.core.store.marks).
    await db.marks.insert_many({"_id": i, "outcome": "{}"} for i in ids)
    await db.sending.insert_many({"_id": i} for i in ids)
    await db.sends.insert_many({"_id": i, "outcome": "{}"} for i in ids)
    for start in range(0, devices, BATCH):
        chunk = hashes[start : start + BATCH]
        await apply_outcomes([outcome(notification_id, h) for h in chunk], db)
        await apply_interactions(
            [
                Interaction(
                    notification_id=notification_id,
                    app_id="app",
                    token_hash=h,
                    interaction="opened",
                )
                for h in chunk
            ],
            db,
        )
    return ids


def outcome(notification_id: str, token_hash: str) -> DeliveryOutcome:
    return DeliveryOutcome(
        notification_id=notification_id,
        app_id="app",
        provider="apns",
        platform="ios",
        token_hash=token_hash,
        outcome="success",
        accepted_at=NOW,
    )


async def left(db: AsyncDatabase[Document], ids: list[str]) -> dict[str, int]:
    """How many of the sends' records each record collection still holds."""
    interactions = [f"{i}:opened" for i in ids]
    return {
        name: await db[name].count_documents(
            {"_id": {"$in": interactions if name == "interactions" else ids}}
        )
        for name in RECORDS
    }


async def notification(db: AsyncDatabase[Document], notification_id: str) -> Document | None:
    return await db.notifications.find_one({"_id": notification_id})


def counters(found: Document | None) -> Any:
    assert found is not None
    return (found["state"], found["counters"], found["by_platform"])


async def test_expired_records_go_and_fresh_ones_stay(
    db: AsyncDatabase[Document], settings: Settings
) -> None:
    old = await sent(db, "n-old", 10, timedelta(days=8))
    fresh = await sent(db, "n-fresh", 6, timedelta(days=6, hours=23))
    before = {name: removed(name) for name in (*RECORDS, "ledger")}
    old_counters = counters(await notification(db, "n-old"))

    assert await Retention(db, settings, "worker-1").run(NOW)

    assert await left(db, old) == dict.fromkeys(RECORDS, 0)
    assert await left(db, fresh) == dict.fromkeys(RECORDS, 6)
    assert {name: removed(name) - before[name] for name in RECORDS} == dict.fromkeys(RECORDS, 10)
    # Three batches of deliveries and three of interactions named the old records.
    assert removed("ledger") - before["ledger"] == 6
    assert await db.ledger.count_documents({"notification_id": "n-old"}) == 0
    # The notification outlives its records, its counters as they were.
    kept = await notification(db, "n-old")
    assert counters(kept) == old_counters == ("done", old_counters[1], old_counters[2])
    assert old_counters[1]["sent"] == 10
    assert kept is not None
    assert "records_removed" in kept


async def test_notifications_outlive_their_records_then_go_with_their_idempotency_key(
    db: AsyncDatabase[Document], settings: Settings
) -> None:
    ancient = await sent(db, "n-ancient", 3, timedelta(days=91))
    await db.notifications.update_one(
        {"_id": "n-ancient"}, {"$set": {"idempotency_id": "acct:key-1"}}
    )
    # A key claimed again, after it expired, by a newer request stays with that request.
    await sent(db, "n-reused-key", 1, timedelta(days=92))
    await db.notifications.update_one(
        {"_id": "n-reused-key"}, {"$set": {"idempotency_id": "acct:key-2"}}
    )
    await db.idempotency.insert_many(
        [
            {"_id": "acct:key-1", "notification_id": "n-ancient", "created": NOW},
            {"_id": "acct:key-2", "notification_id": "n-newer", "created": NOW},
        ]
    )
    await sent(db, "n-week-old", 2, timedelta(days=8))
    before = removed("notifications")

    assert await Retention(db, settings, "worker-1").run(NOW)

    assert await notification(db, "n-ancient") is None
    assert await notification(db, "n-reused-key") is None
    assert await left(db, ancient) == dict.fromkeys(RECORDS, 0)
    assert [k["_id"] async for k in db.idempotency.find()] == ["acct:key-2"]
    assert removed("notifications") - before == 2
    assert counters(await notification(db, "n-week-old"))[1]["sent"] == 2


async def test_a_run_stopped_midway_is_finished_by_the_next(
    db: AsyncDatabase[Document], settings: Settings
) -> None:
    ids = await sent(db, "n-stopped", 12, timedelta(days=8))
    # What a run stopped midway leaves: one ledger entry done, the next one's deliveries
    # (and marks) deleted but not the entry itself, the notification not marked.
    entries = await db.ledger.find({"collection": "deliveries"}).to_list(None)
    assert len(entries) == 3
    for entry in entries[:2]:
        for name in ("deliveries", "marks", "sends", "sending"):
            await db[name].delete_many({"_id": {"$in": entry["ids"]}})
    await db.ledger.delete_one({"_id": entries[0]["_id"]})
    assert (await left(db, ids))["deliveries"] == 4

    assert await Retention(db, settings, "worker-2").run(NOW)

    assert await left(db, ids) == dict.fromkeys(RECORDS, 0)
    assert await db.ledger.count_documents({}) == 0


async def test_records_a_dead_worker_left_unnamed_are_named_by_their_redelivery(
    db: AsyncDatabase[Document], settings: Settings
) -> None:
    ids = await sent(db, "n-dead-worker", 2, timedelta(days=8))
    # A feedback worker killed after recording a batch, before naming or counting it.
    late = outcome("n-dead-worker", f"{99:064x}")
    await db.deliveries.insert_one(
        {
            "_id": f"n-dead-worker:{late.token_hash}",
            "notification_id": "n-dead-worker",
            "outcome": "success",
            "platform": "ios",
            "answered_at": late.answered_at,
            "batch": f"{(NOW - timedelta(minutes=5)).timestamp():.3f}:dead",
        }
    )
    await apply_outcomes([late], db)

    assert await Retention(db, settings, "worker-1").run(NOW)

    assert await db.deliveries.count_documents({}) == 0
    assert await left(db, ids) == dict.fromkeys(RECORDS, 0)


async def test_a_live_notification_is_untouched(
    db: AsyncDatabase[Document], settings: Settings
) -> None:
    ids = await sent(db, "n-live", 8, timedelta(minutes=1))
    # Still sending: one more device to answer.
    await db.notifications.update_one(
        {"_id": "n-live"}, {"$inc": {"counters.targeted": 1}, "$set": {"state": "sending"}}
    )
    live = await notification(db, "n-live")
    assert live is not None
    ledger = await db.ledger.find().to_list(None)

    assert await Retention(db, settings, "worker-1").run(NOW)

    assert await notification(db, "n-live") == live
    assert await db.ledger.find().to_list(None) == ledger
    assert await left(db, ids) == dict.fromkeys(RECORDS, 8)
    # And it counts on afterwards as before.
    await apply_outcomes([outcome("n-live", f"{8:064x}")], db)
    state, counted, _ = counters(await notification(db, "n-live"))
    assert (state, counted) == ("done", {**live["counters"], "sent": 9})


async def test_one_worker_at_a_time_holds_the_lease(
    db: AsyncDatabase[Document], settings: Settings
) -> None:
    ids = await sent(db, "n-leased", 2, timedelta(days=8))
    held_until: datetime = utc_now() + timedelta(seconds=LEASE_SECONDS)
    await db.leases.insert_one({"_id": "retention", "holder": "worker-1", "until": held_until})

    assert not await Retention(db, settings, "worker-2").run(NOW)
    assert await left(db, ids) == dict.fromkeys(RECORDS, 2)

    # A lease its holder left lapse (the worker died) is taken over.
    await db.leases.update_one({"_id": "retention"}, {"$set": {"until": utc_now()}})
    assert await Retention(db, settings, "worker-2").run(NOW)
    assert await left(db, ids) == dict.fromkeys(RECORDS, 0)
    # Released when done: the next run of any worker may take it.
    assert await Retention(db, settings, "worker-1").run(NOW)


async def test_the_feedback_service_runs_retention(
    db: AsyncDatabase[Document], child_env: dict[str, str]
) -> None:
    ids = await sent(db, "n-service", 3, timedelta(days=8))
    fresh = await sent(db, "n-service-fresh", 1, timedelta(hours=1))
    port = processes.free_port()
    env = {
        **child_env,
        "PUSHLINE_METRICS_PORT": str(port),
        "PUSHLINE_RETENTION_INTERVAL_SECONDS": "0.5",
    }
    service = processes.Process(["services.cli", "feedback"], env)
    try:
        await service.wait_ready(f"http://127.0.0.1:{port}/readyz")
        for _ in range(120):
            if await left(db, ids) == dict.fromkeys(RECORDS, 0):
                break
            await asyncio.sleep(0.5)
        assert await left(db, ids) == dict.fromkeys(RECORDS, 0), service.output()
        assert await left(db, fresh) == dict.fromkeys(RECORDS, 1)
        async with httpx.AsyncClient() as client:
            page = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        assert 'pushline_retention_removed_total{collection="deliveries"} 3.0' in page
    finally:
        service.close()


async def test_a_run_goes_on_until_every_expired_notification_is_done(
    db: AsyncDatabase[Document], settings: Settings
) -> None:
    many = NOTIFICATIONS_PER_QUERY + 20
    await db.notifications.insert_many(
        {"_id": f"n-{i}", "created": NOW - timedelta(days=age)}
        for i in range(many)
        for age in [8 if i % 2 else 91]
    )

    assert await Retention(db, settings, "worker-1").run(NOW)

    assert await db.notifications.count_documents({}) == many // 2
    assert await db.notifications.count_documents({"records_removed": None}) == 0
