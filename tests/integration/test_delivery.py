"""End to end: a send request on Kafka reaches FCM, APNs and Web Push (the emulators,
real protocol servers) through the resolver, the sender and feedback, and the
notification ends `done` with exact counters."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core import topics
from services.core.events import Audience, Content, SendRequest, utc_now
from services.core.settings import Settings
from services.core.store.client import Document
from services.core.store.indexes import ensure_indexes
from services.core.tokens import hash_token
from services.emulators import APNSEmulator, EmulatorThread, FCMEmulator, WebPushEmulator
from services.emulators.__main__ import sandbox_vapid
from services.emulators.state import TokenState
from tests.integration import processes
from tests.integration.kafka_io import eventually, publish

pytestmark = pytest.mark.integration

ACCOUNT = "acc-e2e"
APP = "sandbox-app"
APNS_TOKEN = "ab" * 32


class Emulators:
    def __init__(self, cert_dir: Path) -> None:
        self.fcm = FCMEmulator()
        self.apns = APNSEmulator(cert_dir=cert_dir)
        self.webpush = WebPushEmulator()
        self.thread = EmulatorThread(self.fcm, self.apns, self.webpush)


@pytest.fixture
def emulators(tmp_path: Path, settings: Settings) -> Iterator[Emulators]:
    running = Emulators(tmp_path / "tls")
    with running.thread:
        # What `pushline emulators` writes for sandbox apps.
        directory = tmp_path / "state" / "emulators"
        directory.mkdir(parents=True)
        clients = {
            e.provider: e.client_config() for e in (running.fcm, running.apns, running.webpush)
        }
        clients["webpush"]["vapid"] = sandbox_vapid(
            settings.model_copy(update={"state_dir": tmp_path / "state"})
        )
        (directory / "clients.json").write_text(json.dumps(clients))
        yield running


@pytest.fixture
async def pipeline(
    child_env: dict[str, str], tmp_path: Path, emulators: Emulators
) -> AsyncIterator[None]:
    """Resolver, sender and feedback as processes, the sandbox pointed at the emulators."""
    started = []
    try:
        for name in ("resolver", "sender", "feedback"):
            port = processes.free_port()
            env = {
                **child_env,
                "PUSHLINE_METRICS_PORT": str(port),
                "PUSHLINE_STATE_DIR": str(tmp_path / "state"),
            }
            service = processes.Process(["services.cli", name], env)
            started.append(service)
            await service.wait_ready(f"http://127.0.0.1:{port}/readyz")
        yield
    finally:
        for service in started:
            service.close()


def device(token: str, platform: str, provider: str, **more: object) -> Document:
    now = utc_now()
    return {
        "app_id": APP,
        "account_id": ACCOUNT,
        "platform": platform,
        "provider": provider,
        "token": token,
        "token_hash": hash_token(token),
        "contact_id": "ana",
        "status": "active",
        "registered_at": now,
        "created": now,
        **more,
    }


@pytest.mark.usefixtures("pipeline")
async def test_a_notification_reaches_every_provider_and_counts_exactly(
    settings: Settings, db: AsyncDatabase[Document], emulators: Emulators
) -> None:
    await ensure_indexes(db)
    now = utc_now()
    await db.apps.insert_one(
        {
            "_id": APP,
            "account_id": ACCOUNT,
            "name": "Sandbox",
            "sandbox": True,
            "created": now,
            "updated": now,
        }
    )
    subscription = emulators.webpush.subscribe()
    gone = f"fcm-gone-{uuid.uuid4().hex}"
    emulators.fcm.controls.mark([gone], TokenState.UNREGISTERED)
    await db.devices.insert_many(
        [
            device("fcm-token-ana", "android", "fcm"),
            device(gone, "android", "fcm"),
            device(APNS_TOKEN, "ios", "apns"),
            device(subscription["endpoint"], "web", "webpush", subscription=subscription),
        ]
    )
    send = SendRequest(
        notification_id=f"n-{uuid.uuid4()}",
        account_id=ACCOUNT,
        app_id=APP,
        to=Audience(contact_ids=["ana"]),
        notification=Content(title="Hola Ana", body="Tu pedido va en camino"),
        data={"order": "42"},
    )
    await publish(
        settings, topics.SEND_REQUESTS, topics.notification_key(send.notification_id), send
    )

    async def done() -> Document | None:
        doc = await db.notifications.find_one({"_id": send.notification_id})
        return doc if doc and doc["state"] == "done" else None

    notification = await eventually(done, within=90)
    counters = notification["counters"]
    assert (counters["targeted"], counters["sent"], counters["invalid"], counters["failed"]) == (
        4,
        3,
        1,
        0,
    )
    invalid = await db.devices.find_one({"token": gone})
    assert invalid is not None
    assert (invalid["status"], invalid["invalid_reason"]) == ("invalid", "UNREGISTERED")

    (fcm,) = [r for r in emulators.fcm.controls.records() if r.status == 200]
    message = fcm.payload["message"]
    assert message["notification"] == {"title": "Hola Ana", "body": "Tu pedido va en camino"}
    assert message["data"] == {"order": "42"}
    assert (message.get("token") or message.get("fid")) == "fcm-token-ana"

    (apns,) = emulators.apns.controls.records()
    assert apns.status == 200
    assert apns.target == APNS_TOKEN
    assert apns.payload["aps"]["alert"] == {"title": "Hola Ana", "body": "Tu pedido va en camino"}
    assert apns.payload["order"] == "42"

    (webpush,) = emulators.webpush.controls.records()
    assert webpush.status == 201
    assert webpush.plaintext is not None
    assert b"Hola Ana" in webpush.plaintext
