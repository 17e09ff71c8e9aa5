"""A native send with a callback URL, through the real pipeline (the ingest in this
process; resolver, sender and feedback as processes; the provider emulators): once its
devices are reached, the caller's server receives one signed POST with the counters the
status call shows, and the device event it asked for, naming the device by its hash. A
send published straight on Kafka calls back the URL its publisher gave, signed as given.

The caller's server listens on loopback, which the operator allows here
(`PUSHLINE_WEBHOOK_ALLOW_PRIVATE`, for the ingest and the feedback worker alike).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core import topics
from services.core.events import (
    Audience,
    Content,
    Options,
    SendCallback,
    SendRequest,
    utc_now,
)
from services.core.settings import Settings
from services.core.store.accounts import Accounts
from services.core.store.client import Document
from services.core.tokens import hash_token
from services.ingest.app import create_app
from services.ingest.callbacks import signature
from services.sandbox.emulators.state import TokenState
from tests.devices import store_devices
from tests.integration.kafka_io import eventually, publish
from tests.integration.pipeline import (
    ACCOUNT,
    APP,
    Emulators,
    Pipeline,
    device,
    running_pipeline,
    sandbox_app,
)
from tests.integration.webhook_receiver import Received, Receiver, webhook_receiver

pytestmark = pytest.mark.integration

APNS_TOKEN = "cd" * 32


@pytest.fixture
async def pipeline(child_env: dict[str, str], emulators: Emulators) -> AsyncIterator[Pipeline]:
    async with running_pipeline(
        {**child_env, **emulators.env, "PUSHLINE_WEBHOOK_ALLOW_PRIVATE": "true"}
    ) as running:
        yield running


@pytest.fixture
async def ingest(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.model_copy(update={"webhook_allow_private": True}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as http:
            yield http


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with webhook_receiver() as found:
        yield found


def of_type(receiver: Receiver, kind: str) -> list[Received]:
    return [call for call in receiver.calls if call.body.get("type") == kind]


@pytest.mark.usefixtures("pipeline")
async def test_a_send_calls_back_once_signed_with_its_counters_and_device_events(
    db: AsyncDatabase[Document],
    emulators: Emulators,
    ingest: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    _, api_key = await Accounts(db).create("E2E", ACCOUNT)
    await sandbox_app(db)
    gone = f"fcm-gone-{uuid.uuid4().hex}"
    emulators.fcm.controls.mark([gone], TokenState.UNREGISTERED)
    await store_devices(
        db,
        [
            device("fcm-token-ana", "android", "fcm"),
            device(gone, "android", "fcm"),
            device(APNS_TOKEN, "ios", "apns"),
        ],
    )
    url = f"{receiver.base_url}/hooks/sends?tenant=7"
    headers = {"Authorization": f"Bearer {api_key}"}
    sent = await ingest.post(
        "/v1/notifications",
        json={
            "app_id": APP,
            "to": {"contact_ids": ["ana"]},
            "notification": {"title": "Hola Ana"},
            "callback_url": url,
            "callback_events": ["invalid_token"],
        },
        headers=headers,
    )
    assert sent.status_code == 202, sent.text
    notification_id = sent.json()["id"]

    async def final() -> Received | None:
        found = of_type(receiver, "notification")
        return found[0] if found else None

    delivered = await eventually(final, within=90)
    status = await ingest.get(f"/v1/notifications/{notification_id}", headers=headers)
    shown = status.json()
    assert shown["state"] == "done"

    assert delivered.path == "/hooks/sends"
    assert delivered.body == {
        "type": "notification",
        "id": notification_id,
        "app_id": APP,
        "state": "done",
        "counters": shown["counters"],
        "platforms": shown["platforms"],
        "signature": signature(api_key, url),
    }
    counters = shown["counters"]
    assert (counters["targeted"], counters["sent"], counters["invalid"]) == (3, 2, 1)

    (events_call,) = of_type(receiver, "devices")
    assert events_call.body["id"] == notification_id
    assert events_call.body["signature"] == signature(api_key, url)
    (event,) = events_call.body["events"]
    assert (event["device_id"], event["outcome"], event["platform"]) == (
        hash_token(gone),
        "invalid_token",
        "android",
    )
    assert gone not in str(receiver.calls)

    # Nothing more comes: the call was made once.
    await asyncio.sleep(3)
    assert len(of_type(receiver, "notification")) == 1
    stored = await db.notifications.find_one({"_id": notification_id})
    assert stored is not None
    assert stored["callback_fired"] is not None


@pytest.mark.usefixtures("pipeline")
async def test_a_send_published_on_kafka_calls_back_its_publishers_url(
    settings: Settings, db: AsyncDatabase[Document], receiver: Receiver
) -> None:
    await sandbox_app(db)
    await store_devices(db, [device("fcm-token-ana", "android", "fcm")])
    url = f"{receiver.base_url}/crm"
    send = SendRequest(
        notification_id=f"crm-{uuid.uuid4().hex}",
        account_id=ACCOUNT,
        app_id=APP,
        to=Audience(contact_ids=["ana"]),
        notification=Content(title="Hola"),
        options=Options(dry_run=True),
        callback=SendCallback(url=url, headers={"X-Crm": "77"}, signature="crm-signed"),
    )
    await publish(
        settings, topics.SEND_REQUESTS, topics.notification_key(send.notification_id), send
    )

    async def final() -> Received | None:
        found = of_type(receiver, "notification")
        return found[0] if found else None

    call = await eventually(final, within=60)
    assert call.path == "/crm"
    assert call.headers["X-Crm"] == "77"
    assert call.body["id"] == send.notification_id
    assert call.body["state"] == "done"
    assert call.body["signature"] == "crm-signed"
    # A dry run counts its audience and sends nothing.
    assert (call.body["counters"]["targeted"], call.body["counters"]["sent"]) == (1, 0)
    assert of_type(receiver, "devices") == []


@pytest.mark.usefixtures("pipeline")
async def test_a_cancelled_scheduled_send_calls_back_once_with_its_state(
    db: AsyncDatabase[Document], ingest: httpx.AsyncClient, receiver: Receiver
) -> None:
    _, api_key = await Accounts(db).create("E2E", ACCOUNT)
    await sandbox_app(db)
    await store_devices(db, [device("fcm-token-ana", "android", "fcm")])
    url = f"{receiver.base_url}/hooks/sends"
    headers = {"Authorization": f"Bearer {api_key}"}
    sent = await ingest.post(
        "/v1/notifications",
        json={
            "app_id": APP,
            "to": {"contact_ids": ["ana"]},
            "notification": {"title": "Later"},
            "send_at": (utc_now() + timedelta(hours=1)).isoformat(),
            "callback_url": url,
        },
        headers=headers,
    )
    assert sent.status_code == 202, sent.text
    notification_id = sent.json()["id"]
    for _ in range(2):
        cancelled = await ingest.delete(f"/v1/notifications/{notification_id}", headers=headers)
        assert cancelled.status_code == 202, cancelled.text

    async def final() -> Received | None:
        found = of_type(receiver, "notification")
        return found[0] if found else None

    called = await eventually(final, within=60)
    assert (called.body["id"], called.body["state"]) == (notification_id, "cancelled")
    assert called.body["counters"]["sent"] == 0
    assert called.body["signature"] == signature(api_key, url)
    await asyncio.sleep(3)
    assert len(of_type(receiver, "notification")) == 1
