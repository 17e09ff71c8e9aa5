"""Segments through the real pipeline: devices registered with tags and a language on the
native API and on Kafka, one changed with `PATCH`, then a dry run that counts a segment
and a send that reaches exactly its devices (as the emulators record them)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core import topics
from services.core.events import RegisterDevice
from services.core.settings import Settings
from services.core.store.accounts import Accounts
from services.core.store.client import Document
from services.core.tokens import hash_token
from services.core.topics import device_key
from tests.integration.kafka_io import eventually, publish
from tests.integration.pipeline import ACCOUNT, APP, Emulators, sandbox_app

pytestmark = pytest.mark.integration

IOS_PRO = "ab" * 32
IOS_FREE = "cd" * 32
# Registered with tags and languages: which the segment takes, and why.
DEVICES: dict[str, dict[str, Any]] = {
    "fcm-pro-adult": {"platform": "android", "tags": {"plan": "pro", "age": 30}},  # yes
    "fcm-pro-minor": {"platform": "android", "tags": {"plan": "pro", "age": 16}},  # no: age
    "fcm-free-adult": {"platform": "android", "tags": {"plan": "free", "age": 40}},  # patched
    "fcm-portuguese": {"platform": "android", "language": "pt-BR"},  # yes: language
    "fcm-english": {"platform": "android", "language": "en", "tags": {"age": 50}},  # no
    IOS_PRO: {"platform": "ios", "tags": {"plan": "team", "age": 18.5}},  # yes
}
SEGMENT = {
    "or": [
        {"and": [{"tag": "plan", "in": ["pro", "team"]}, {"tag": "age", "gte": 18}]},
        {"language": "pt"},
    ]
}
REACHED_FCM = {"fcm-pro-adult", "fcm-free-adult", "fcm-portuguese"}


async def _status(ingest: httpx.AsyncClient, auth: dict[str, str], notification_id: str) -> Any:
    async def done() -> Any:
        found = await ingest.get(f"/v1/notifications/{notification_id}", headers=auth)
        shown = found.json()
        return shown if shown["state"] == "done" else None

    return await eventually(done, within=60)


@pytest.mark.usefixtures("pipeline")
async def test_a_segment_reaches_exactly_its_devices(
    settings: Settings,
    db: AsyncDatabase[Document],
    emulators: Emulators,
    ingest: httpx.AsyncClient,
) -> None:
    await sandbox_app(db)
    _, api_key = await Accounts(db).create("Empresa", ACCOUNT)
    auth = {"Authorization": f"Bearer {api_key}"}
    for token, fields in DEVICES.items():
        response = await ingest.post(
            f"/v1/apps/{APP}/devices",
            params={"wait": 20},
            json={"token": token, **fields},
            headers=auth,
        )
        assert response.json()["status"] == "Success", response.text
    # One more on Kafka, outside the segment: on the plan, under age.
    kafka_device = RegisterDevice(
        request_id=uuid.uuid4().hex,
        account_id=ACCOUNT,
        app_id=APP,
        platform="ios",
        token=IOS_FREE,
        tags={"plan": "pro", "age": 17},
        language="es-CO",
    )
    await publish(
        settings,
        topics.REGISTRATIONS,
        device_key(APP, hash_token(IOS_FREE)),
        kafka_device,
    )

    async def stored_from_kafka() -> Any:
        found = await ingest.get(f"/v1/apps/{APP}/devices/{hash_token(IOS_FREE)}", headers=auth)
        return found.json() if found.status_code == 200 else None

    shown = await stored_from_kafka() or await eventually(stored_from_kafka)
    assert (shown["tags"], shown["language"]) == ({"plan": "pro", "age": 17}, "es-co")

    # Moved into the segment by a patch, applied in order with its registration.
    free = hash_token("fcm-free-adult")
    patched = await ingest.patch(
        f"/v1/apps/{APP}/devices/{free}", json={"tags": {"plan": "pro"}}, headers=auth
    )
    assert patched.status_code == 202, patched.text

    async def applied() -> bool:
        found = await ingest.get(f"/v1/apps/{APP}/devices/{free}", headers=auth)
        return bool(found.json()["tags"] == {"plan": "pro", "age": 40})

    await eventually(applied)
    listed = await ingest.get(f"/v1/apps/{APP}/devices", params={"tag": "plan:pro"}, headers=auth)
    assert {d["id"] for d in listed.json()["devices"]} == {
        hash_token(t) for t in ("fcm-pro-adult", "fcm-pro-minor", "fcm-free-adult", IOS_FREE)
    }

    body: dict[str, Any] = {
        "app_id": APP,
        "to": {"filters": SEGMENT},
        "notification": {"title": "Oferta"},
        "options": {"dry_run": True},
    }
    preview = await ingest.post("/v1/notifications", json=body, headers=auth)
    assert preview.status_code == 202, preview.text
    counted = await _status(ingest, auth, preview.json()["id"])
    assert counted["counters"]["targeted"] == 4
    assert counted["providers"] == {"fcm": 3, "apns": 1}
    assert counted["counters"]["sent"] == 0
    assert emulators.fcm.controls.records() == []

    body["options"] = {}
    sent = await ingest.post("/v1/notifications", json=body, headers=auth)
    assert sent.status_code == 202, sent.text
    done = await _status(ingest, auth, sent.json()["id"])
    assert (done["counters"]["targeted"], done["counters"]["sent"]) == (4, 4)
    fcm = {r.payload["message"].get("token") for r in emulators.fcm.controls.records()}
    assert fcm == REACHED_FCM
    assert {r.target for r in emulators.apns.controls.records()} == {IOS_PRO}

    # Narrowed by platform, the same segment is its iOS device only.
    body["to"] = {"filters": SEGMENT, "platforms": ["ios"]}
    body["options"] = {"dry_run": True}
    ios_only = await ingest.post("/v1/notifications", json=body, headers=auth)
    assert (await _status(ingest, auth, ios_only.json()["id"]))["providers"] == {"apns": 1}
