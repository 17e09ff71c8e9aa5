"""Scheduled and cancelled sends through the real pipeline (ingest, resolver, sender and
feedback, Kafka, the store, the provider emulators): a scheduled send is held until it
is due, then delivered; a cancelled one never reaches a device; a cancel stops a large
send mid-way; a schedule survives killing the resolver."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timedelta

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from bench.fanout import job_counter
from services.core import topics
from services.core.events import Audience, CancelSend, Content, SendRequest, utc_now
from services.core.settings import Settings
from services.core.store.accounts import Accounts
from services.core.store.client import Document
from services.core.store.notifications import NotificationsRepository
from services.sender.cancels import REFRESH
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
)

pytestmark = pytest.mark.integration

APNS_TOKEN = "cd" * 32


async def api_key(db: AsyncDatabase[Document]) -> dict[str, str]:
    """The sandbox app, its account, and that account's Authorization header."""
    await sandbox_app(db)
    _, key = await Accounts(db).create("Empresa", ACCOUNT)
    return {"Authorization": f"Bearer {key}"}


async def ana_devices(db: AsyncDatabase[Document]) -> None:
    await store_devices(
        db, [device(APNS_TOKEN, "ios", "apns"), device("fcm-ana", "android", "fcm")]
    )


def sent_records(emulators: Emulators) -> list[float]:
    """When each provider call the emulators took arrived."""
    return [
        r.received_at for r in emulators.apns.controls.records() + emulators.fcm.controls.records()
    ]


async def state_of(db: AsyncDatabase[Document], notification_id: str, state: str) -> Document:
    async def reached() -> Document | None:
        doc = await db.notifications.find_one({"_id": notification_id})
        return doc if doc is not None and doc["state"] == state else None

    return await eventually(reached, within=60)


@pytest.mark.usefixtures("pipeline")
async def test_a_scheduled_send_is_held_until_due_then_delivered(
    db: AsyncDatabase[Document], emulators: Emulators, ingest: httpx.AsyncClient
) -> None:
    headers = await api_key(db)
    await ana_devices(db)
    send_at = utc_now() + timedelta(seconds=8)
    response = await ingest.post(
        "/v1/notifications",
        json={
            "app_id": APP,
            "to": {"contact_ids": ["ana"]},
            "notification": {"title": "Recordatorio", "body": "Tu cita es mañana"},
            "send_at": send_at.isoformat(),
        },
        headers=headers,
    )
    assert response.status_code == 202, response.text
    location = response.headers["Location"]
    notification_id = response.json()["id"]
    # The resolver took it and holds it.
    await eventually(lambda: db.schedules.find_one({"_id": notification_id}), within=30)
    status = (await ingest.get(location, headers=headers)).json()
    assert status["state"] == "scheduled"
    assert datetime.fromisoformat(status["send_at"]) == send_at.replace(
        microsecond=send_at.microsecond // 1000 * 1000
    )
    assert sent_records(emulators) == []

    done = await state_of(db, notification_id, "done")
    assert (done["counters"]["targeted"], done["counters"]["sent"]) == (2, 2)
    arrived = sent_records(emulators)
    assert len(arrived) == 2
    assert min(arrived) >= send_at.timestamp()
    assert await db.schedules.count_documents({}) == 0


@pytest.mark.usefixtures("pipeline")
async def test_a_scheduled_send_cancelled_on_kafka_never_reaches_a_device(
    settings: Settings, db: AsyncDatabase[Document], emulators: Emulators
) -> None:
    await sandbox_app(db)
    await ana_devices(db)
    send_at = utc_now() + timedelta(seconds=6)
    send = SendRequest(
        notification_id=f"n-{uuid.uuid4()}",
        account_id=ACCOUNT,
        app_id=APP,
        to=Audience(contact_ids=["ana"]),
        notification=Content(title="Oferta"),
        send_at=send_at,
    )
    key = topics.notification_key(send.notification_id)
    await publish(settings, topics.SEND_REQUESTS, key, send)
    await eventually(lambda: db.schedules.find_one({"_id": send.notification_id}), within=30)
    cancel = CancelSend(type="cancel", notification_id=send.notification_id, account_id=ACCOUNT)
    await publish(settings, topics.SEND_REQUESTS, key, cancel)
    await state_of(db, send.notification_id, "cancelled")
    assert await db.schedules.count_documents({}) == 0

    await asyncio.sleep(max(0.0, (send_at - utc_now()).total_seconds()) + 4)
    assert sent_records(emulators) == []
    doc = await db.notifications.find_one({"_id": send.notification_id})
    assert doc is not None
    assert doc["state"] == "cancelled"
    assert doc["counters"]["sent"] == 0


DEVICES = 3000


@pytest.mark.usefixtures("pipeline")
async def test_a_cancel_stops_a_large_send(
    db: AsyncDatabase[Document], emulators: Emulators, ingest: httpx.AsyncClient
) -> None:
    headers = await api_key(db)
    await db.devices.insert_many(
        [device(f"{index:064x}", "ios", "apns") for index in range(DEVICES)]
    )
    # Slow enough that the send is still going when it is cancelled.
    emulators.apns.controls.slow_down(0.5)
    response = await ingest.post(
        "/v1/notifications",
        json={"app_id": APP, "to": {"all": True}, "notification": {"title": "Campaña"}},
        headers=headers,
    )
    assert response.status_code == 202, response.text
    notification_id = response.json()["id"]

    async def going() -> bool:
        return len(sent_records(emulators)) >= 200

    await eventually(going, within=60)

    cancelled = await ingest.delete(response.headers["Location"], headers=headers)
    cancelled_at = time.time()
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["state"] == "cancelled"

    async def settled() -> Document | None:
        doc = await db.notifications.find_one({"_id": notification_id})
        if doc is None or not doc.get("fanout_done"):
            return None
        counters = doc["counters"]
        ended = sum(counters[n] for n in ("sent", "failed", "invalid", "cancelled"))
        return doc if ended == counters["targeted"] else None

    doc = await eventually(settled, within=120)
    counters = doc["counters"]
    assert doc["state"] == "cancelled"
    assert 200 <= counters["sent"] < DEVICES
    assert counters["cancelled"] > 0
    assert counters["failed"] == counters["invalid"] == 0
    # Every provider call is counted, and none started once the senders saw the cancel
    # (within REFRESH; the calls on the wire then were already received).
    arrived = sent_records(emulators)
    assert len(arrived) == counters["sent"]
    assert max(arrived) <= cancelled_at + REFRESH + 1.0
    await asyncio.sleep(2)
    assert len(sent_records(emulators)) == counters["sent"]
    status = (await ingest.get(response.headers["Location"], headers=headers)).json()
    assert (status["state"], status["counters"]["sent"]) == ("cancelled", counters["sent"])


async def test_a_scheduled_send_survives_a_resolver_kill(
    settings: Settings,
    db: AsyncDatabase[Document],
    emulators: Emulators,
    pipeline: Pipeline,
) -> None:
    await sandbox_app(db)
    await ana_devices(db)
    send = SendRequest(
        notification_id=f"n-{uuid.uuid4()}",
        account_id=ACCOUNT,
        app_id=APP,
        to=Audience(contact_ids=["ana"]),
        notification=Content(title="Mañana"),
        send_at=utc_now() + timedelta(seconds=12),
    )
    await publish(
        settings, topics.SEND_REQUESTS, topics.notification_key(send.notification_id), send
    )
    await eventually(lambda: db.schedules.find_one({"_id": send.notification_id}), within=30)
    # Long enough for the resolver to commit the request's offset (Faust commits every
    # 2.8 s): then only the store remembers the send.
    await asyncio.sleep(4)
    pipeline.kill("resolver")
    assert send.send_at is not None
    await asyncio.sleep(max(0.0, (send.send_at - utc_now()).total_seconds()) + 1)
    # Due while no resolver runs: nothing went out.
    assert sent_records(emulators) == []

    await pipeline.start("resolver-2", "resolver")
    doc = await finished(db, send, within=120)
    assert (doc["counters"]["targeted"], doc["counters"]["sent"]) == (2, 2)
    assert len(sent_records(emulators)) == 2

    # The new resolver may have taken the request again from Kafka (the killed one had not
    # committed it) before its due-send loop came round: the loop drops the schedule then.
    async def dropped() -> bool:
        return await db.schedules.count_documents({}) == 0

    await eventually(dropped, within=10)
    assert len(sent_records(emulators)) == 2


FANOUT = 5000


async def test_a_cancel_stops_the_fan_out_and_its_queued_jobs_never_send(
    settings: Settings,
    db: AsyncDatabase[Document],
    child_env: dict[str, str],
    emulators: Emulators,
) -> None:
    await sandbox_app(db)
    await db.devices.insert_many(
        [device(f"{index:064x}", "ios", "apns") for index in range(FANOUT)]
    )
    running = Pipeline({**child_env, **emulators.env})
    try:
        # No sender yet: the jobs wait on Kafka.
        for name in ("resolver", "feedback"):
            await running.start(name)
        send = SendRequest(
            notification_id=f"n-{uuid.uuid4()}",
            account_id=ACCOUNT,
            app_id=APP,
            to=Audience(all=True),
            notification=Content(title="Campaña"),
        )
        await publish(
            settings, topics.SEND_REQUESTS, topics.notification_key(send.notification_id), send
        )

        async def checkpointed() -> bool:
            doc = await db.notifications.find_one({"_id": send.notification_id})
            return bool((doc or {}).get("fanout_checkpoint"))

        await eventually(checkpointed, within=120)
        cancelled = await NotificationsRepository(db).cancel(send.notification_id, ACCOUNT)
        assert cancelled is not None
        assert not cancelled.get("fanout_done"), "the fan-out ended before the cancel"

        async def fanned_out() -> Document | None:
            doc = await db.notifications.find_one({"_id": send.notification_id})
            return doc if doc is not None and doc.get("fanout_done") else None

        doc = await eventually(fanned_out, within=120)
        targeted = doc["counters"]["targeted"]
        # It stopped within a window of 1,000 jobs after the cancel.
        assert 0 < targeted < FANOUT, targeted
        async with job_counter(settings) as jobs:
            assert await jobs() == targeted

        await running.start("sender")

        async def all_dropped() -> Document | None:
            doc = await db.notifications.find_one({"_id": send.notification_id})
            return doc if doc is not None and doc["counters"]["cancelled"] == targeted else None

        doc = await eventually(all_dropped, within=120)
        assert doc["state"] == "cancelled"
        assert doc["counters"]["sent"] == 0
        assert emulators.apns.controls.records() == []
    finally:
        running.close()
