"""A resolver killed (SIGKILL) in the middle of a `to.all` fan-out, or of a segment's
(`to.filters`): the next one resumes from the last checkpoint instead of producing every
job again, and every device gets exactly one counted outcome."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from pydantic import TypeAdapter
from pymongo.asynchronous.database import AsyncDatabase

from bench.fanout import job_counter
from services.core import topics
from services.core.events import Audience, Content, SendRequest
from services.core.filters import Filter
from services.core.settings import Settings
from services.core.store.client import Document
from services.core.store.devices import device_id
from tests.integration.kafka_io import eventually, publish
from tests.integration.pipeline import (
    ACCOUNT,
    APP,
    Emulators,
    Pipeline,
    device,
    finished,
    running_pipeline,
    sandbox_app,
)

pytestmark = pytest.mark.integration

# Devices the send reaches.
DEVICES = 5000
# Every other device of the app: a segment the fan-out reads twice as many devices for.
EVEN = TypeAdapter(Filter).validate_python({"tag": "parity", "eq": "even"})


# The account's jobs a second: the fan-out takes seconds, so the test sees it midway (at
# full speed, 5,000 jobs were all checkpointed between two of its looks).
PACE = 2000


@pytest.fixture
async def pipeline(child_env: dict[str, str], emulators: Emulators) -> AsyncIterator[Pipeline]:
    env = {**child_env, **emulators.env, "PUSHLINE_RATE_NOTIFICATIONS_PER_SECOND": str(PACE)}
    async with running_pipeline(env) as running:
        yield running


@pytest.mark.parametrize("segment", [None, EVEN], ids=["all", "segment"])
async def test_a_killed_resolver_is_resumed_from_its_checkpoint(
    settings: Settings,
    db: AsyncDatabase[Document],
    pipeline: Pipeline,
    emulators: Emulators,
    segment: Filter | None,
) -> None:
    await sandbox_app(db)
    stored = DEVICES if segment is None else 2 * DEVICES
    await db.devices.insert_many(
        [
            device(f"{index:064x}", "ios", "apns", tags={"parity": ("odd", "even")[index % 2 == 0]})
            for index in range(stored)
        ]
    )
    expected = {f"{index:064x}" for index in range(stored) if segment is None or index % 2 == 0}
    assert len(expected) == DEVICES
    # Another app's devices are never reached.
    other = device("ff" * 32, "ios", "apns", app_id="other-app")
    await db.devices.insert_one({**other, "_id": device_id("other-app", other["token_hash"])})
    send = SendRequest(
        notification_id=f"n-{uuid.uuid4()}",
        account_id=ACCOUNT,
        app_id=APP,
        to=Audience(all=True) if segment is None else Audience(filters=segment),
        notification=Content(title="Campaña", body="Para todos"),
    )
    await publish(
        settings, topics.SEND_REQUESTS, topics.notification_key(send.notification_id), send
    )

    async def checkpointed() -> Document | None:
        # Far enough that producing every job again would show: 40% of the audience.
        doc = await db.notifications.find_one({"_id": send.notification_id})
        saved = (doc or {}).get("fanout_checkpoint") or {}
        return doc if sum(saved.get("by_provider", {}).values()) >= 0.4 * DEVICES else None

    await eventually(checkpointed, within=120)
    pipeline.kill("resolver")
    killed_at = await db.notifications.find_one({"_id": send.notification_id})
    assert killed_at is not None
    assert not killed_at.get("fanout_done"), "the fan-out ended before the kill"
    resumed_from = killed_at["fanout_checkpoint"]["by_provider"]["apns"]
    assert 0 < resumed_from < DEVICES

    await pipeline.start("resolver-2", "resolver")
    doc = await finished(db, send, within=300)

    counters = doc["counters"]
    assert (counters["targeted"], counters["sent"], counters["failed"], counters["invalid"]) == (
        DEVICES,
        DEVICES,
        0,
        0,
    )
    assert await db.deliveries.count_documents({"notification_id": send.notification_id}) == (
        DEVICES
    )
    reached = {r.target for r in emulators.apns.controls.records() if 200 <= r.status < 300}
    assert reached == expected
    async with job_counter(settings) as jobs:
        produced = await jobs()
    # The resumed resolver produced again only what came after the checkpoint; starting
    # over would have made at least 1.4 times the audience.
    assert DEVICES <= produced < 1.3 * DEVICES, produced
