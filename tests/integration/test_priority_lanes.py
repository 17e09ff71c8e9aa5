"""Priority lanes through the real pipeline: a small send to a contact, issued while a
large `to.all` send crawls through a slow APNs, is done before it."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core import topics
from services.core.events import Audience, Content, SendRequest
from services.core.settings import Settings
from services.core.store.client import Document
from tests.devices import store_devices
from tests.integration.kafka_io import eventually, publish
from tests.integration.pipeline import (
    ACCOUNT,
    APP,
    Emulators,
    Pipeline,
    device,
    finished,
    sandbox_app,
    send_to_ana,
)

pytestmark = pytest.mark.integration

# More than the sender's eight batches (of up to 500 jobs) hold at once: without lanes,
# the small send's job would wait behind the rest in its topic.
BULK_DEVICES = 6_000
# Each APNs answer waits this long: a batch of 500 goes out in 25 calls of 20 devices.
LATENCY = 0.2


def jobs_taken(page: str, lane: str) -> float:
    """The sender's `pushline_sender_jobs_total` of APNs jobs in `lane`."""
    found = re.search(
        rf'^pushline_sender_jobs_total\{{lane="{lane}",provider="apns"\}} (\S+)$', page, re.M
    )
    return float(found.group(1)) if found else 0.0


async def test_a_transactional_send_overtakes_a_bulk_one_in_progress(
    settings: Settings, db: AsyncDatabase[Document], emulators: Emulators, pipeline: Pipeline
) -> None:
    await sandbox_app(db)
    await store_devices(
        db,
        [device("ab" * 32, "ios", "apns")]
        + [
            device(f"{i:064x}", "ios", "apns", contact_id=f"bulk-{i}")
            for i in range(1, BULK_DEVICES + 1)
        ],
    )
    emulators.apns.controls.slow_down(LATENCY)
    bulk = SendRequest(
        notification_id=f"n-bulk-{uuid.uuid4()}",
        account_id=ACCOUNT,
        app_id=APP,
        to=Audience(all=True),
        notification=Content(title="Rebajas", body="Todo al 50%"),
    )
    assert bulk.lane == "bulk"
    await publish(
        settings, topics.SEND_REQUESTS, topics.notification_key(bulk.notification_id), bulk
    )

    async def sending() -> Document | None:
        doc = await db.notifications.find_one({"_id": bulk.notification_id})
        return doc if doc and doc["counters"].get("sent", 0) > 0 else None

    # The bulk send is under way: its first provider calls have been answered.
    await eventually(sending, within=60)
    small = await send_to_ana(settings)
    notification = await finished(db, small, within=60)
    assert notification["counters"]["sent"] == 1
    still = await db.notifications.find_one({"_id": bulk.notification_id})
    assert still is not None
    assert still["state"] != "done"
    # Done before the bulk send's first batches, not just before its last one.
    assert still["counters"].get("sent", 0) < BULK_DEVICES // 2
    # The bulk send is only served later, not starved: it ends, every device reached once.
    emulators.apns.controls.slow_down(0)
    done = await finished(db, bulk, within=120)
    assert done["counters"]["sent"] == BULK_DEVICES + 1
    async with httpx.AsyncClient() as client:
        page = (await client.get(f"http://127.0.0.1:{pipeline.ports['sender']}/metrics")).text
    assert jobs_taken(page, "transactional") == 1
    assert jobs_taken(page, "bulk") == BULK_DEVICES + 1
