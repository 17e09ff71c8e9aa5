"""The send APIs: Masiv sendToList (seed 002's example, verbatim but for host, ids and
keys) and the native notifications API, on the real Kafka and store."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core import topics
from services.core.events import (
    DeliveryOutcome,
    FanoutCompleted,
    Interaction,
    Outcome,
    SendRequest,
    utc_now,
)
from services.core.settings import Settings
from services.core.store.apps import NewApp
from services.core.store.client import Document
from services.core.store.devices import device_id
from services.core.store.notifications import NotificationsRepository
from services.core.tokens import hash_token
from services.feedback.deliveries import apply_interactions, apply_outcomes
from tests.contract.conftest import TenantFactory, fcm_credentials
from tests.devices import store_devices
from tests.integration.kafka_io import read, read_many

pytestmark = pytest.mark.integration

SEED_BODY = b"""{
"tokens": [
"e5b7244fe8e07a38eea633aaaec5c",
"969423461e6a6adf967920efbd764",
"12bh8c2ioq308kkd19csbokctqlcq21"
],
"tokensByAssociation": {
"appId": "com.empresa.miapp",
"deviceTypesToSend": [
"ANDROID",
"IOS"
],
"cellphones ": [
"5713140000000",
"5713140000001"
],
"emails": [
"usuario1@dominio.com",
"usuario2@dominio.com"
]
},
"notification": {
"title": "Mensaje para lista",
"message": "Este es un mensaje para una lista de dispositivos",
"imageUrl": "https://dominio.com/ruta/imagen.png"
},
"data": {
"Campa\xc3\xb1a": "Cr\xc3\xa9ditos nuevos",
"Destinatarios": "Todos los clientes",
"Notificar m\xc3\xa1ximo": "3 dispositivos"
}
}"""


def auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}


async def test_masiv_send_to_list_seed_example(
    client: httpx.AsyncClient,
    tenants: TenantFactory,
    ingest_settings: Settings,
    db: AsyncDatabase[Document],
) -> None:
    tenant = await tenants.make(package_names=["com.empresa.miapp"])
    await tenants.make()  # another tenant's app must not matter
    response = await client.post(
        "/v1/notification/sendToList", content=SEED_BODY, headers=auth(tenant.api_key)
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "OK", "data": "Notification has been sent", "error": None}

    send = await read(
        ingest_settings,
        topics.SEND_REQUESTS,
        lambda m: isinstance(m, SendRequest) and m.account_id == tenant.account_id,
    )
    assert isinstance(send, SendRequest)
    assert send.app_id == tenant.app.id
    assert send.to.tokens == [
        "e5b7244fe8e07a38eea633aaaec5c",
        "969423461e6a6adf967920efbd764",
        "12bh8c2ioq308kkd19csbokctqlcq21",
    ]
    assert send.to.cellphones == ["5713140000000", "5713140000001"]
    assert send.to.emails == ["usuario1@dominio.com", "usuario2@dominio.com"]
    assert send.to.platforms == ["android", "ios"]
    assert send.to.tokens_from == "account"
    assert send.notification.title == "Mensaje para lista"
    assert send.notification.body == "Este es un mensaje para una lista de dispositivos"
    assert send.notification.image_url == "https://dominio.com/ruta/imagen.png"
    assert send.data["Campaña"] == "Créditos nuevos"
    stored = await db.notifications.find_one({"_id": send.notification_id})
    assert stored is not None
    assert stored["state"] == "accepted"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'{"tokens": ["t"], "notification": {"title": "x", "message": "y"}, '
            b'"data": {"from": "me"}}',
            "'from' is reserved",
        ),
        (
            b'{"tokens": ["t"], "notification": {"title": "x", "message": "y"}, '
            b'"data": {"google.c.a": "1"}}',
            "'google.c.a' is reserved",
        ),
        (
            b'{"tokens": ["t"], "notification": {"title": "x", "message": "y"}, '
            b'"data": {"GCM_x": "1"}}',
            "'GCM_x' is reserved",
        ),
        (b'{"tokens": ["t"], "notification": {"message": "y"}}', "notification.title"),
        (
            b'{"tokens": ["t"], "notification": {"title": "x", "message": "  "}}',
            "notification.message",
        ),
        (b'{"notification": {"title": "x", "message": "y"}}', "tokensByAssociation"),
        (
            b'{"tokensByAssociation": {"appId": "com.empresa.miapp"}, '
            b'"notification": {"title": "x", "message": "y"}}',
            "needs cellphones or emails when there are no tokens",
        ),
        (
            b'{"tokens": ["t"], "tokensByAssociation": {"deviceTypesToSend": ["IOS"]}, '
            b'"notification": {"title": "x", "message": "y"}}',
            "tokensByAssociation needs cellphones, emails, appId or a mix",
        ),
        (b'{"tokens": "t", "notification": {"title": "x", "message": "y"}}', "tokens"),
        (b'{"tokens": ["t"],', "not valid JSON"),
    ],
)
async def test_masiv_bad_bodies_are_400_and_send_nothing(
    client: httpx.AsyncClient,
    tenants: TenantFactory,
    db: AsyncDatabase[Document],
    body: bytes,
    message: str,
) -> None:
    tenant = await tenants.make(package_names=["com.empresa.miapp"])
    response = await client.post(
        "/v1/notification/sendToList", content=body, headers=auth(tenant.api_key)
    )
    assert response.status_code == 400
    error = response.json()
    assert (error["status"], error["error"], error["path"]) == (
        400,
        "Bad Request",
        "/v1/notification/sendToList",
    )
    assert message in error["message"]
    assert await db.notifications.count_documents({}) == 0


async def test_masiv_unregistered_tokens_need_an_app_when_there_are_several(
    client: httpx.AsyncClient, tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    tenant = await tenants.make()
    await tenants.apps.create(NewApp(account_id=tenant.account_id, name="Second"))
    body = b'{"tokens": ["never-registered"], "notification": {"title": "x", "message": "y"}}'
    response = await client.post(
        "/v1/notification/sendToList", content=body, headers=auth(tenant.api_key)
    )
    assert response.status_code == 400
    assert "appId" in response.json()["message"]
    assert await db.notifications.count_documents({}) == 0


async def test_masiv_app_id_alone_names_the_app_of_raw_tokens(
    client: httpx.AsyncClient, tenants: TenantFactory, ingest_settings: Settings
) -> None:
    tenant = await tenants.make()
    second = await tenants.apps.create(
        NewApp(
            account_id=tenant.account_id,
            name="Second",
            package_names=["com.empresa.otra"],
            fcm=fcm_credentials(),
        )
    )
    body = (
        b'{"tokens": ["never-registered"], "tokensByAssociation": {"appId": "com.empresa.otra"}, '
        b'"notification": {"title": "x", "message": "y"}}'
    )
    response = await client.post(
        "/v1/notification/sendToList", content=body, headers=auth(tenant.api_key)
    )
    assert response.status_code == 200, response.text
    send = await read(
        ingest_settings,
        topics.SEND_REQUESTS,
        lambda m: isinstance(m, SendRequest) and m.account_id == tenant.account_id,
    )
    assert isinstance(send, SendRequest)
    assert (send.app_id, send.to.tokens) == (second.id, ["never-registered"])
    assert (send.to.cellphones, send.to.emails, send.to.platforms) == ([], [], [])


async def test_native_send_status_and_idempotency(
    client: httpx.AsyncClient,
    tenants: TenantFactory,
    ingest_settings: Settings,
    db: AsyncDatabase[Document],
) -> None:
    tenant = await tenants.make()
    other = await tenants.make()
    body = {
        "app_id": tenant.app.id,
        "to": {"contact_ids": ["ana"], "platforms": ["android"]},
        "notification": {"title": "Hola", "body": "Mundo", "image_url": "https://x.example/i.png"},
        "data": {"k": "v"},
        "options": {"ttl": 60, "priority": "normal", "collapse_key": "c", "send_to": "latest"},
    }
    headers = {**auth(tenant.api_key), "Idempotency-Key": f"key-{uuid.uuid4()}"}
    first = await client.post("/v1/notifications", json=body, headers=headers)
    assert first.status_code == 202, first.text
    notification_id = first.json()["id"]
    assert first.headers["Location"] == f"/v1/notifications/{notification_id}"
    again = await client.post("/v1/notifications", json=body, headers=headers)
    assert (again.status_code, again.json()["id"]) == (202, notification_id)
    assert await db.notifications.count_documents({}) == 1

    send = await read(
        ingest_settings,
        topics.SEND_REQUESTS,
        lambda m: isinstance(m, SendRequest) and m.notification_id == notification_id,
    )
    assert isinstance(send, SendRequest)
    assert (send.options.ttl, send.options.priority, send.options.send_to) == (
        60,
        "normal",
        "latest",
    )
    assert send.to.platforms == ["android"]
    assert send.to.tokens_from == "app"

    status = await client.get(f"/v1/notifications/{notification_id}", headers=headers)
    assert status.status_code == 200
    shown = status.json()
    assert shown["state"] == "accepted"
    assert shown["counters"]["sent"] == 0
    foreign = await client.get(f"/v1/notifications/{notification_id}", headers=auth(other.api_key))
    assert foreign.status_code == 404


async def test_an_idempotency_key_reused_for_another_body_is_422(
    client: httpx.AsyncClient, tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    tenant = await tenants.make()
    body = {
        "app_id": tenant.app.id,
        "to": {"contact_ids": ["ana"]},
        "notification": {"title": "Hola", "body": "Mundo"},
        "data": {"a": "1", "b": "2"},
    }
    headers = {**auth(tenant.api_key), "Idempotency-Key": f"key-{uuid.uuid4()}"}
    first = await client.post("/v1/notifications", json=body, headers=headers)
    assert first.status_code == 202, first.text
    notification_id = first.json()["id"]

    changed = {**body, "notification": {"title": "Adiós", "body": "Mundo"}}
    conflict = await client.post("/v1/notifications", json=changed, headers=headers)
    assert conflict.status_code == 422, conflict.text
    assert conflict.headers["content-type"] == "application/problem+json"
    problem = conflict.json()
    assert (problem["type"], problem["status"]) == ("about:blank", 422)
    assert "Idempotency-Key" in problem["detail"]
    assert "another request" in problem["detail"]
    assert await db.notifications.count_documents({}) == 1

    # The same body, however spaced and ordered, is the same request.
    reordered = json.dumps({**body, "data": {"b": "2", "a": "1"}}, indent=2)
    again = await client.post("/v1/notifications", content=reordered, headers=headers)
    assert (again.status_code, again.json()) == (202, {"id": notification_id})
    assert await db.notifications.count_documents({}) == 1


async def test_masiv_refuses_an_idempotency_key_reused_for_another_body(
    client: httpx.AsyncClient, tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    tenant = await tenants.make()
    headers = {**auth(tenant.api_key), "Idempotency-Key": f"key-{uuid.uuid4()}"}
    body = {"tokens": ["t-1"], "notification": {"title": "x", "message": "y"}}
    first = await client.post("/v1/notification/sendToList", json=body, headers=headers)
    assert first.status_code == 200, first.text
    body["tokens"] = ["t-2"]
    conflict = await client.post("/v1/notification/sendToList", json=body, headers=headers)
    assert conflict.status_code == 400
    assert conflict.json()["error"] == "Bad Request"
    assert "Idempotency-Key" in conflict.json()["message"]
    assert await db.notifications.count_documents({}) == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"to": {}}, "to"),
        ({"to": {"all": True, "contact_ids": ["ana"]}}, "to"),
        ({"to": {"all": True, "tokens": ["t-1"]}}, "to"),
        ({"to": {"all": True}, "options": {"send_to": "latest"}}, "options.send_to"),
        ({"notification": {}}, "notification"),
        ({"notification": {"title": "x" * 5000}}, "notification"),
        ({"data": {"from": "x"}}, "notification"),
        ({"options": {"priority": "urgent"}}, "options.priority"),
        ({"to": {"cellphones": ["12"]}}, "to.cellphones[0]"),
    ],
)
async def test_native_bad_sends_are_problems(
    client: httpx.AsyncClient,
    tenants: TenantFactory,
    db: AsyncDatabase[Document],
    change: dict[str, object],
    field: str,
) -> None:
    tenant = await tenants.make()
    body = {
        "app_id": tenant.app.id,
        "to": {"contact_ids": ["ana"]},
        "notification": {"title": "Hola"},
        **change,
    }
    response = await client.post("/v1/notifications", json=body, headers=auth(tenant.api_key))
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert any(e["field"].startswith(field) for e in response.json()["errors"])
    assert await db.notifications.count_documents({}) == 0


async def test_native_send_to_all_of_an_app(
    client: httpx.AsyncClient,
    tenants: TenantFactory,
    ingest_settings: Settings,
) -> None:
    tenant = await tenants.make()
    body = {
        "app_id": tenant.app.id,
        "to": {"all": True, "platforms": ["ios", "web"]},
        "notification": {"title": "Campaña"},
        "options": {"dry_run": True},
    }
    response = await client.post("/v1/notifications", json=body, headers=auth(tenant.api_key))
    assert response.status_code == 202, response.text
    notification_id = response.json()["id"]
    send = await read(
        ingest_settings,
        topics.SEND_REQUESTS,
        lambda m: isinstance(m, SendRequest) and m.notification_id == notification_id,
    )
    assert isinstance(send, SendRequest)
    assert (send.app_id, send.to.all, send.to.platforms, send.options.dry_run) == (
        tenant.app.id,
        True,
        ["ios", "web"],
        True,
    )
    assert (send.to.tokens, send.to.contact_ids, send.to.cellphones, send.to.emails) == (
        [],
        [],
        [],
        [],
    )


async def _sent(
    db: AsyncDatabase[Document], app_id: str, notification_id: str, outcomes: dict[str, Outcome]
) -> None:
    """Record, as the feedback stage does, that the notification's fan-out made one job
    per token and what each provider answered."""
    notifications = NotificationsRepository(db)
    await notifications.fanout_completed(
        FanoutCompleted(notification_id=notification_id, jobs=len(outcomes))
    )
    await apply_outcomes(
        [
            DeliveryOutcome(
                notification_id=notification_id,
                app_id=app_id,
                provider="fcm",
                platform="android",
                token_hash=hash_token(token),
                outcome=outcome,
                accepted_at=utc_now(),
            )
            for token, outcome in outcomes.items()
        ],
        db,
    )


async def test_interaction_events_go_to_feedback(
    client: httpx.AsyncClient,
    tenants: TenantFactory,
    ingest_settings: Settings,
    db: AsyncDatabase[Document],
) -> None:
    tenant = await tenants.make()
    sent = await client.post(
        "/v1/notifications",
        json={"app_id": tenant.app.id, "to": {"tokens": ["tok-1"]}, "notification": {"title": "x"}},
        headers=auth(tenant.api_key),
    )
    notification_id = sent.json()["id"]
    await _sent(db, tenant.app.id, notification_id, {"tok-1": "success"})
    reported = await client.post(
        "/v1/events",
        json={"notification_id": notification_id, "token": "tok-1", "type": "opened"},
        headers=auth(tenant.api_key),
    )
    assert reported.status_code == 202
    event = await read(
        ingest_settings,
        topics.FEEDBACK,
        lambda m: isinstance(m, Interaction) and m.notification_id == notification_id,
    )
    assert isinstance(event, Interaction)
    assert (event.token_hash, event.interaction) == (hash_token("tok-1"), "opened")
    unknown = await client.post(
        "/v1/events",
        json={"notification_id": "nope", "token": "tok-1", "type": "opened"},
        headers=auth(tenant.api_key),
    )
    assert unknown.status_code == 404


async def test_events_count_only_devices_the_notification_was_sent_to(
    client: httpx.AsyncClient,
    tenants: TenantFactory,
    ingest_settings: Settings,
    db: AsyncDatabase[Document],
) -> None:
    tenant = await tenants.make()
    sent = await client.post(
        "/v1/notifications",
        json={
            "app_id": tenant.app.id,
            "to": {"tokens": ["tok-1", "tok-failed"]},
            "notification": {"title": "x"},
        },
        headers=auth(tenant.api_key),
    )
    notification_id = sent.json()["id"]
    await _sent(db, tenant.app.id, notification_id, {"tok-1": "success", "tok-failed": "failed"})

    for token in [*(f"made-up-{i}" for i in range(5)), "tok-failed"]:
        refused = await client.post(
            "/v1/events",
            json={"notification_id": notification_id, "token": token, "type": "clicked"},
            headers=auth(tenant.api_key),
        )
        assert refused.status_code == 404, token
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["detail"] == (
            f"notification {notification_id} was not sent to this device"
        )
        assert token not in refused.text
    taken = await client.post(
        "/v1/events",
        json={"notification_id": notification_id, "token": "tok-1", "type": "clicked"},
        headers=auth(tenant.api_key),
    )
    assert taken.status_code == 202

    # Feedback gets the one event, and counts one click against one targeted device.
    [event] = await read_many(
        ingest_settings,
        [topics.FEEDBACK],
        lambda m: isinstance(m, Interaction) and m.notification_id == notification_id,
        count=1,
    )
    assert isinstance(event, Interaction)
    assert event.token_hash == hash_token("tok-1")
    with pytest.raises(AssertionError, match="1 of 2 messages"):
        await read_many(
            ingest_settings,
            [topics.FEEDBACK],
            lambda m: isinstance(m, Interaction) and m.notification_id == notification_id,
            count=2,
            within=3,
        )
    await apply_interactions([event], db)
    shown = (
        await client.get(f"/v1/notifications/{notification_id}", headers=auth(tenant.api_key))
    ).json()
    assert (shown["counters"]["targeted"], shown["counters"]["clicked"]) == (2, 1)


async def test_an_event_waits_for_its_send_to_be_recorded(
    client: httpx.AsyncClient, tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    """The app may report a notification its device showed before feedback recorded the
    provider's answer: the event waits for it while the notification is not done."""
    tenant = await tenants.make()
    sent = await client.post(
        "/v1/notifications",
        json={"app_id": tenant.app.id, "to": {"tokens": ["tok-1"]}, "notification": {"title": "x"}},
        headers=auth(tenant.api_key),
    )
    notification_id = sent.json()["id"]

    async def recorded_later() -> None:
        await asyncio.sleep(0.5)
        await _sent(db, tenant.app.id, notification_id, {"tok-1": "success"})

    recording = asyncio.create_task(recorded_later())
    reported = await client.post(
        "/v1/events",
        json={"notification_id": notification_id, "token": "tok-1", "type": "delivered"},
        headers=auth(tenant.api_key),
    )
    await recording
    assert reported.status_code == 202


async def test_contact_reachability(
    client: httpx.AsyncClient, tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    tenant = await tenants.make()
    now = utc_now()
    base = {"app_id": tenant.app.id, "account_id": tenant.account_id, "contact_id": "ana"}
    await store_devices(
        db,
        [
            {
                **base,
                "_id": device_id(tenant.app.id, "a"),
                "token_hash": "a",
                "platform": "android",
                "status": "active",
                "last_success_at": now,
            },
            {
                **base,
                "_id": device_id(tenant.app.id, "b"),
                "token_hash": "b",
                "platform": "android",
                "status": "invalid",
                "invalid_reason": "UNREGISTERED",
                "invalid_at": now,
            },
            {
                **base,
                "_id": device_id(tenant.app.id, "c"),
                "token_hash": "c",
                "platform": "ios",
                "status": "active",
            },
        ],
    )
    response = await client.get(
        f"/v1/apps/{tenant.app.id}/contacts/ana", headers=auth(tenant.api_key)
    )
    assert response.status_code == 200
    platforms = response.json()["platforms"]
    assert platforms["ios"] == {
        "active": 1,
        "invalid": 0,
        "last_success_at": None,
        "last_invalid_at": None,
        "last_invalid_reason": None,
    }
    assert platforms["android"]["last_success_at"] is not None
    assert platforms["android"]["active"] == 1
    assert platforms["android"]["invalid"] == 1
    assert platforms["android"]["last_invalid_reason"] == "UNREGISTERED"
