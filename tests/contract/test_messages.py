"""The native send's message options: data-only and background pushes, and how a shown
notification looks, through the ingest to the send-requests topic."""

from __future__ import annotations

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core import topics
from services.core.events import AndroidOptions, Content, Options, SendRequest
from services.core.providers.apns import APNsProvider
from services.core.providers.payload import ELLIPSIS, build_payload
from services.core.providers.webpush import WebPushProvider
from services.core.settings import Settings
from services.core.store.client import Document
from tests.contract.conftest import TenantFactory, all_providers
from tests.integration.kafka_io import read

pytestmark = pytest.mark.integration


def auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}


async def sent(settings: Settings, notification_id: str) -> SendRequest:
    send = await read(
        settings,
        topics.SEND_REQUESTS,
        lambda m: isinstance(m, SendRequest) and m.notification_id == notification_id,
    )
    assert isinstance(send, SendRequest)
    return send


async def test_a_background_push_is_data_without_a_notification(
    client: httpx.AsyncClient, tenants: TenantFactory, ingest_settings: Settings
) -> None:
    tenant = await tenants.make()
    body = {
        "app_id": tenant.app.id,
        "to": {"contact_ids": ["ana"]},
        "data": {"sync": "inbox"},
        "options": {"content_available": True},
    }
    response = await client.post("/v1/notifications", json=body, headers=auth(tenant.api_key))
    assert response.status_code == 202, response.text
    send = await sent(ingest_settings, response.json()["id"])
    assert (send.notification, send.data) == (Content(), {"sync": "inbox"})
    assert send.options.content_available


async def test_shown_options_reach_the_topic(
    client: httpx.AsyncClient, tenants: TenantFactory, ingest_settings: Settings
) -> None:
    tenant = await tenants.make()
    options = {
        "badge": 2,
        "sound": "default",
        "thread_id": "orders",
        "category": "ORDER",
        "interruption_level": "time-sensitive",
        "mutable_content": True,
        "android": {"channel_id": "orders", "color": "#112233", "icon": "ic_stat"},
    }
    body = {
        "app_id": tenant.app.id,
        "to": {"contact_ids": ["ana"]},
        "notification": {"title": "Hola"},
        "options": options,
    }
    response = await client.post("/v1/notifications", json=body, headers=auth(tenant.api_key))
    assert response.status_code == 202, response.text
    send = await sent(ingest_settings, response.json()["id"])
    shown = send.options
    assert (shown.badge, shown.sound, shown.thread_id, shown.category) == (
        2,
        "default",
        "orders",
        "ORDER",
    )
    assert (shown.interruption_level, shown.mutable_content) == ("time-sensitive", True)
    assert shown.android == AndroidOptions(channel_id="orders", color="#112233", icon="ic_stat")


DATA_ONLY = {"notification": None, "data": {"sync": "inbox"}}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        # Nothing to show and nothing to deliver.
        ({"notification": None}, "notification"),
        ({"notification": None, "data": {}}, "notification"),
        # A background push shows nothing.
        ({"options": {"content_available": True}}, "options.content_available"),
        # What only a shown notification has.
        ({**DATA_ONLY, "options": {"badge": 1}}, "options.badge"),
        ({**DATA_ONLY, "options": {"sound": "default"}}, "options.sound"),
        ({**DATA_ONLY, "options": {"android": {"channel_id": "c"}}}, "options.android"),
        ({"options": {"badge": -1}}, "options.badge"),
        ({"options": {"android": {"channel_id": ""}}}, "options.android.channel_id"),
        ({"options": {"android": {"color": "red"}}}, "options.android.color"),
        ({"options": {"interruption_level": "loud"}}, "options.interruption_level"),
        ({**DATA_ONLY, "options": {"mutable_content": True}}, "options.mutable_content"),
        ({**DATA_ONLY, "options": {"click_url": "shop://a"}}, "options.click_url"),
        ({**DATA_ONLY, "options": {"tag": "t"}}, "options.tag"),
        ({**DATA_ONLY, "options": {"body_loc_key": "K"}}, "options.body_loc_key"),
        ({"options": {"click_url": "no scheme"}}, "options.click_url"),
        ({"options": {"title_loc_args": ["a"]}}, "options"),
        ({"options": {"title_loc_key": "K", "title_loc_args": [1]}}, "options.title_loc_args"),
        ({"options": {"apns": {"custom": {"aps": "x"}}}}, "options.apns"),
        ({"options": {"apns": {"headers": {"apns-priority": "7"}}}}, "options.apns.headers"),
        ({"options": {"apns": {"aps": {"sound": 1}}}}, "options.apns.aps.sound"),
        ({"options": {"fcm": {"android": {"ttl": "60"}}}}, "options.fcm.android.ttl"),
        ({"options": {"fcm": {"data": {"k": 1}}}}, "options.fcm.data"),
        (
            {"options": {"fcm": {"android": {"notification": {"visibility": "ALL"}}}}},
            "options.fcm.android.notification.visibility",
        ),
        ({"options": {"webpush": {"headers": {"Urgency": "now"}}}}, "options.webpush.headers"),
        ({"options": {"fcm": {"data": {"google.x": "1"}}}}, "notification"),
    ],
)
async def test_bad_messages_are_problems(
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
    if body["notification"] is None:
        del body["notification"]
    response = await client.post("/v1/notifications", json=body, headers=auth(tenant.api_key))
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert any(e["field"].startswith(field) for e in response.json()["errors"])
    assert await db.notifications.count_documents({}) == 0


async def test_options_count_toward_the_payload_limit(
    client: httpx.AsyncClient, tenants: TenantFactory
) -> None:
    tenant = await tenants.make(providers={"apns": all_providers()["apns"]})
    base = build_payload(APNsProvider, Content(title="Hola"), {"k": ""}, Options()).size
    body: dict[str, object] = {
        "app_id": tenant.app.id,
        "to": {"contact_ids": ["ana"]},
        "notification": {"title": "Hola"},
        "data": {"k": "x" * (4096 - base)},
    }
    fits = await client.post("/v1/notifications", json=body, headers=auth(tenant.api_key))
    assert fits.status_code == 202, fits.text
    body["options"] = {"sound": "default"}
    over = await client.post("/v1/notifications", json=body, headers=auth(tenant.api_key))
    assert over.status_code == 400, over.text
    [error] = over.json()["errors"]
    assert error["field"] == "notification"
    assert "apns payload is 4114 bytes encoded, over the 4096-byte limit" in error["message"]


async def test_truncate_shortens_the_body_to_fit_every_provider(
    client: httpx.AsyncClient, tenants: TenantFactory, ingest_settings: Settings
) -> None:
    tenant = await tenants.make()
    body: dict[str, object] = {
        "app_id": tenant.app.id,
        "to": {"contact_ids": ["ana"]},
        "notification": {"title": "Hola", "body": "palabra " * 500},
        "data": {"k": "x" * 1000},
    }
    over = await client.post("/v1/notifications", json=body, headers=auth(tenant.api_key))
    assert over.status_code == 400, over.text
    assert "payload is 5051 bytes encoded" in over.json()["errors"][0]["message"]
    body["options"] = {"truncate": True}
    fits = await client.post("/v1/notifications", json=body, headers=auth(tenant.api_key))
    assert fits.status_code == 202, fits.text
    send = await sent(ingest_settings, fits.json()["id"])
    assert send.notification.body.startswith("palabra palabra")
    assert send.notification.body.endswith(ELLIPSIS)
    webpush = build_payload(WebPushProvider, send.notification, send.data, send.options)
    assert 3993 - len("palabra ") <= webpush.size <= 3993


async def test_click_url_tag_localisation_and_overrides_reach_the_topic(
    client: httpx.AsyncClient, tenants: TenantFactory, ingest_settings: Settings
) -> None:
    tenant = await tenants.make()
    options = {
        "click_url": "shop://orders/42",
        "tag": "order-42",
        "title_loc_key": "ORDER_TITLE",
        "title_loc_args": ["42"],
        "body_loc_key": "ORDER_BODY",
        "body_loc_args": ["Ana", "tomorrow"],
        "apns": {
            "headers": {"apns-priority": "5", "apns-collapse-id": "order-42"},
            "aps": {"relevance-score": 0.5, "alert": {"subtitle": "Shipped"}},
            "custom": {"campaign": "spring"},
        },
        "fcm": {
            "android": {"ttl": "60s", "notification": {"notification_priority": "PRIORITY_HIGH"}},
            "data": {"campaign": "spring"},
        },
        "webpush": {
            "headers": {"Urgency": "low"},
            "notification": {"requireInteraction": True, "icon": "https://a.example/i.png"},
        },
    }
    body = {
        "app_id": tenant.app.id,
        "to": {"contact_ids": ["ana"]},
        "notification": {"title": "Order 42", "body": "Shipped"},
        "options": options,
    }
    response = await client.post("/v1/notifications", json=body, headers=auth(tenant.api_key))
    assert response.status_code == 202, response.text
    send = await sent(ingest_settings, response.json()["id"])
    assert send.options == Options.model_validate(options)
    assert send.options.title_loc_args == ("42",)
    assert send.options.apns is not None
    assert send.options.apns.provider_json() == options["apns"]
    assert send.options.fcm is not None
    assert send.options.fcm.provider_json() == options["fcm"]
    assert send.options.webpush is not None
    assert send.options.webpush.provider_json() == options["webpush"]


async def test_a_badge_increment_is_refused_with_why(
    client: httpx.AsyncClient, tenants: TenantFactory
) -> None:
    tenant = await tenants.make()
    body = {
        "app_id": tenant.app.id,
        "to": {"contact_ids": ["ana"]},
        "notification": {"title": "Hola"},
        "options": {"badge": "increment"},
    }
    response = await client.post("/v1/notifications", json=body, headers=auth(tenant.api_key))
    assert response.status_code == 400, response.text
    [error] = response.json()["errors"]
    assert error["field"] == "options.badge"
    assert "APNs sets the badge to a number and has no increment" in error["message"]


async def test_an_override_s_unknown_field_is_named(
    client: httpx.AsyncClient, tenants: TenantFactory
) -> None:
    tenant = await tenants.make()
    body = {
        "app_id": tenant.app.id,
        "to": {"contact_ids": ["ana"]},
        "notification": {"title": "Hola"},
        "options": {"apns": {"headers": {"apns-prority": "5"}}},
    }
    response = await client.post("/v1/notifications", json=body, headers=auth(tenant.api_key))
    assert response.status_code == 400, response.text
    [error] = response.json()["errors"]
    assert error == {
        "field": "options.apns.headers",
        "message": "not a field the provider takes here: apns-prority",
    }


async def test_overrides_count_toward_the_payload_limit(
    client: httpx.AsyncClient, tenants: TenantFactory
) -> None:
    tenant = await tenants.make(providers={"webpush": all_providers()["webpush"]})
    body: dict[str, object] = {
        "app_id": tenant.app.id,
        "to": {"contact_ids": ["ana"]},
        "notification": {"title": "Hola"},
        "options": {"webpush": {"notification": {"body": "x" * 3990}}},
    }
    over = await client.post("/v1/notifications", json=body, headers=auth(tenant.api_key))
    assert over.status_code == 400, over.text
    assert "webpush payload is" in over.json()["errors"][0]["message"]


async def test_per_language_content_reaches_the_topic(
    client: httpx.AsyncClient, tenants: TenantFactory, ingest_settings: Settings
) -> None:
    tenant = await tenants.make()
    body = {
        "app_id": tenant.app.id,
        "to": {"contact_ids": ["ana"]},
        "notification": {
            "default": {"title": "Hello"},
            "pt-BR": {"title": "Olá", "body": "Seu pedido chegou"},
            "es": {"title": "Hola"},
        },
    }
    response = await client.post("/v1/notifications", json=body, headers=auth(tenant.api_key))
    assert response.status_code == 202, response.text
    send = await sent(ingest_settings, response.json()["id"])
    assert send.notification == Content(title="Hello")
    assert send.localized == {
        "pt-br": Content(title="Olá", body="Seu pedido chegou"),
        "es": Content(title="Hola"),
    }
    status = await client.get(
        f"/v1/notifications/{send.notification_id}", headers=auth(tenant.api_key)
    )
    assert status.json()["content"]["localized"]["es"]["title"] == "Hola"


@pytest.mark.parametrize(
    ("notification", "field"),
    [
        ({"en": {"title": "Hi"}}, "notification"),
        ({"default": {"title": "Hi"}, "english": {"title": "Hi"}}, "notification"),
        ({"default": {"title": "Hi"}, "es": {"title": " "}}, "notification.es"),
        ({"default": {"title": "Hi"}, "es": {"title": "x" * 1001}}, "notification.es.title"),
        (
            {"default": {"title": "Hi"}, "es": {"title": "Hola"}, "ES": {"title": "Hola"}},
            "notification",
        ),
    ],
)
async def test_bad_per_language_content_is_a_problem(
    client: httpx.AsyncClient,
    tenants: TenantFactory,
    db: AsyncDatabase[Document],
    notification: dict[str, object],
    field: str,
) -> None:
    tenant = await tenants.make()
    body = {"app_id": tenant.app.id, "to": {"contact_ids": ["ana"]}, "notification": notification}
    response = await client.post("/v1/notifications", json=body, headers=auth(tenant.api_key))
    assert response.status_code == 400, response.text
    assert any(e["field"].startswith(field) for e in response.json()["errors"])
    assert await db.notifications.count_documents({}) == 0


async def test_each_language_s_content_is_held_to_the_payload_limit(
    client: httpx.AsyncClient, tenants: TenantFactory, ingest_settings: Settings
) -> None:
    tenant = await tenants.make()
    long = {"title": "Olá", "body": "palavra " * 450}
    body: dict[str, object] = {
        "app_id": tenant.app.id,
        "to": {"contact_ids": ["ana"]},
        "notification": {"default": {"title": "Hello"}, "pt": long},
        "data": {"k": "x" * 1000},
    }
    over = await client.post("/v1/notifications", json=body, headers=auth(tenant.api_key))
    assert over.status_code == 400, over.text
    assert over.json()["errors"][0]["field"] == "notification.pt"
    body["options"] = {"truncate": True}
    fits = await client.post("/v1/notifications", json=body, headers=auth(tenant.api_key))
    assert fits.status_code == 202, fits.text
    send = await sent(ingest_settings, fits.json()["id"])
    assert send.localized["pt"].body.endswith(ELLIPSIS)
    assert send.notification == Content(title="Hello")
