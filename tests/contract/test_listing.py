"""Listing and looking up: the caller's apps, an app's devices (one by its token's hash,
deleted through a cleanup on `push.registrations`) and the caller's notifications, a page
at a time, each scoped to the caller's account."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core.events import CleanupDevices, RegisterDevice, WebPushSubscription, utc_now
from services.core.fields import Platform
from services.core.store.apps import NewApp
from services.core.store.client import Document
from services.core.store.devices import DevicesRepository
from services.core.tokens import hash_token
from services.core.topics import device_key
from tests.contract.conftest import SUBSCRIPTION_KEYS, Tenant, TenantFactory
from tests.registrations import Tap

pytestmark = pytest.mark.integration

ENDPOINT = "https://push.example.net/send/abc:123/def"


def auth(tenant: Tenant) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.api_key}"}


async def stored(
    db: AsyncDatabase[Document],
    tenant: Tenant,
    token: str,
    *,
    platform: Platform = "android",
    contact_id: str | None = None,
    subscription: WebPushSubscription | None = None,
) -> str:
    """A device of the tenant's app as feedback stores it; its id (the token's hash)."""
    command = RegisterDevice(
        request_id=uuid.uuid4().hex,
        account_id=tenant.account_id,
        app_id=tenant.app.id,
        platform=platform,
        token=token,
        subscription=subscription,
        contact_id=contact_id,
    )
    provider = "webpush" if subscription else "apns" if platform == "ios" else "fcm"
    await DevicesRepository(db).register(command, provider, hash_token(token))
    return hash_token(token)


async def every_page(
    client: httpx.AsyncClient, tenant: Tenant, path: str, name: str, limit: int
) -> list[list[dict[str, Any]]]:
    """Each page of a list, following `next_cursor` to the end."""
    pages: list[list[dict[str, Any]]] = []
    params: dict[str, str | int] = {"limit": limit}
    while True:
        response = await client.get(path, params=params, headers=auth(tenant))
        assert response.status_code == 200, response.text
        pages.append(response.json()[name])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return pages
        params["cursor"] = cursor


async def test_apps_are_the_callers_own_a_page_at_a_time(
    client: httpx.AsyncClient, tenants: TenantFactory
) -> None:
    tenant, other = await tenants.make(), await tenants.make()
    for suffix in ("b", "c"):
        await tenants.apps.create(
            NewApp.model_validate(
                {"account_id": tenant.account_id, "id": f"{tenant.app.id}-{suffix}", "name": "App"}
            )
        )
    pages = await every_page(client, tenant, "/v1/apps", "apps", limit=2)
    assert [len(page) for page in pages] == [2, 1]
    apps = [app for page in pages for app in page]
    assert [app["id"] for app in apps] == [
        tenant.app.id,
        f"{tenant.app.id}-b",
        f"{tenant.app.id}-c",
    ]
    assert other.app.id not in str(apps)
    # Shown without secrets, as the admin API shows them.
    assert apps[0]["providers"]["fcm"] == {"project_id": "pushline-test"}
    assert "private_key" not in str(apps)


async def test_an_apps_devices_page_by_page_and_filtered(
    client: httpx.AsyncClient, tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    tenant, other = await tenants.make(), await tenants.make()
    ids = [
        await stored(db, tenant, f"fcm-{i}", contact_id="c-1" if i < 2 else None) for i in range(4)
    ]
    ids.append(await stored(db, tenant, "a" * 64, platform="ios", contact_id="c-1"))
    invalid = ids[3]
    await DevicesRepository(db).invalidate([(tenant.app.id, invalid, utc_now())], "Unregistered")
    await stored(db, other, "fcm-0", contact_id="c-1")
    path = f"/v1/apps/{tenant.app.id}/devices"

    pages = await every_page(client, tenant, path, "devices", limit=2)
    assert [len(page) for page in pages] == [2, 2, 1]
    listed = [device for page in pages for device in page]
    assert [device["id"] for device in listed] == sorted(ids)
    # Tokens are never returned: a device is named by its token's hash.
    assert "fcm-" not in str(listed)
    first = next(device for device in listed if device["id"] == ids[0])
    assert (first["platform"], first["provider"], first["status"], first["contact_id"]) == (
        "android",
        "fcm",
        "active",
        "c-1",
    )

    async def filtered(**params: str) -> list[object]:
        response = await client.get(path, params=params, headers=auth(tenant))
        assert response.status_code == 200, response.text
        return sorted(device["id"] for device in response.json()["devices"])

    assert await filtered(contact_id="c-1") == sorted([ids[0], ids[1], ids[4]])
    assert await filtered(contact_id="c-1", platform="ios") == [ids[4]]
    assert await filtered(status="invalid") == [invalid]
    assert await filtered(platform="android", status="active") == sorted(ids[:3])
    assert await filtered(contact_id="nobody") == []
    # A contact's devices page like the others.
    contact_pages = await client.get(
        path, params={"contact_id": "c-1", "limit": 2}, headers=auth(tenant)
    )
    cursor = contact_pages.json()["next_cursor"]
    rest = await client.get(
        path, params={"contact_id": "c-1", "limit": 2, "cursor": cursor}, headers=auth(tenant)
    )
    assert [d["id"] for d in contact_pages.json()["devices"] + rest.json()["devices"]] == sorted(
        [ids[0], ids[1], ids[4]]
    )
    assert rest.json()["next_cursor"] is None


async def test_a_cursor_reaches_no_other_apps_devices(
    client: httpx.AsyncClient, tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    tenant, other = await tenants.make(), await tenants.make()
    await stored(db, other, "fcm-other")
    await stored(db, tenant, "fcm-mine")
    page = await client.get(f"/v1/apps/{other.app.id}/devices", headers=auth(tenant))
    assert page.status_code == 404
    # A cursor made for another app's range is refused, not followed.
    forged = base64.urlsafe_b64encode(f"{other.app.id}:".encode()).decode()
    response = await client.get(
        f"/v1/apps/{tenant.app.id}/devices", params={"cursor": forged}, headers=auth(tenant)
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"] == [
        {"field": "cursor", "message": "not a cursor a page of this list gave"}
    ]


async def test_one_device_by_its_token_hash_in_any_tenant_only_its_own(
    client: httpx.AsyncClient, tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    tenant, other = await tenants.make(), await tenants.make()
    subscription = WebPushSubscription(endpoint=ENDPOINT, keys=SUBSCRIPTION_KEYS)
    web = await stored(db, tenant, ENDPOINT, platform="web", subscription=subscription)
    theirs = await stored(db, other, "fcm-theirs")
    response = await client.get(f"/v1/apps/{tenant.app.id}/devices/{web}", headers=auth(tenant))
    assert response.status_code == 200
    device = response.json()
    assert (device["id"], device["platform"], device["provider"]) == (web, "web", "webpush")
    assert ENDPOINT not in response.text
    assert SUBSCRIPTION_KEYS["auth"] not in response.text
    for named in (theirs, "not-a-hash", hash_token("never-registered")):
        missing = await client.get(
            f"/v1/apps/{tenant.app.id}/devices/{named}", headers=auth(tenant)
        )
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
    across = await client.get(f"/v1/apps/{other.app.id}/devices/{theirs}", headers=auth(tenant))
    assert across.status_code == 404


async def test_deleting_a_device_publishes_its_cleanup_keyed_by_the_device(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    tenant, other = await tenants.make(), await tenants.make()
    mine = await stored(db, tenant, "fcm/with:odd-chars", contact_id="c-1")
    theirs = await stored(db, other, "fcm-theirs")
    response = await client.delete(f"/v1/apps/{tenant.app.id}/devices/{mine}", headers=auth(tenant))
    assert response.status_code == 202
    [(key, command)] = await tap.drain(tenant.app.id)
    assert key == device_key(tenant.app.id, mine)
    assert isinstance(command, CleanupDevices)
    assert (command.request_id, command.token, command.contact_id) == (
        response.json()["request_id"],
        "fcm/with:odd-chars",
        None,
    )
    assert (command.account_id, command.app_id) == (tenant.account_id, tenant.app.id)
    for app_id in (tenant.app.id, other.app.id):
        refused = await client.delete(f"/v1/apps/{app_id}/devices/{theirs}", headers=auth(tenant))
        assert refused.status_code == 404
    assert await tap.drain(other.app.id) == []


async def send(client: httpx.AsyncClient, tenant: Tenant, app_id: str, title: str) -> str:
    body = {
        "app_id": app_id,
        "to": {"tokens": ["fcm-secret-token"], "contact_ids": ["c-1", "c-2"]},
        "notification": {"title": title, "body": "Hi"},
        "data": {"order": "42"},
    }
    response = await client.post("/v1/notifications", json=body, headers=auth(tenant))
    assert response.status_code == 202, response.text
    notification_id: str = response.json()["id"]
    return notification_id


async def test_notifications_with_content_and_audience_by_app_and_state(
    client: httpx.AsyncClient, tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    tenant, other = await tenants.make(), await tenants.make()
    second = f"{tenant.app.id}-b"
    await tenants.apps.create(
        NewApp.model_validate(
            {"account_id": tenant.account_id, "id": second, "name": "App", "sandbox": True}
        )
    )
    first_app = [await send(client, tenant, tenant.app.id, f"n-{i}") for i in range(3)]
    in_second = await send(client, tenant, second, "other app")
    await send(client, other, other.app.id, "not yours")

    pages = await every_page(client, tenant, "/v1/notifications", "notifications", limit=2)
    assert [len(page) for page in pages] == [2, 2]
    listed = [n for page in pages for n in page]
    assert [n["id"] for n in listed] == sorted([*first_app, in_second])
    shown = next(n for n in listed if n["id"] == first_app[0])
    assert shown["state"] == "accepted"
    assert shown["content"]["notification"]["title"] == "n-0"
    assert shown["content"]["data"] == {"order": "42"}
    assert shown["audience"] == {
        "all": False,
        "tokens": 1,
        "contact_ids": 2,
        "cellphones": 0,
        "emails": 0,
        "platforms": [],
        "filters": None,
    }
    # The audience is counted, never kept: the status shows no token.
    assert "fcm-secret-token" not in str(listed)
    status = await client.get(f"/v1/notifications/{first_app[0]}", headers=auth(tenant))
    assert status.json()["audience"] == shown["audience"]

    async def ids(**params: str) -> list[str]:
        response = await client.get("/v1/notifications", params=params, headers=auth(tenant))
        assert response.status_code == 200, response.text
        return [n["id"] for n in response.json()["notifications"]]

    assert await ids(app_id=second) == [in_second]
    assert await ids(app_id=tenant.app.id, state="accepted") == sorted(first_app)
    await db.notifications.update_one({"_id": first_app[1]}, {"$set": {"state": "done"}})
    assert await ids(state="done") == [first_app[1]]
    missing = await client.get(
        "/v1/notifications", params={"app_id": other.app.id}, headers=auth(tenant)
    )
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/apps", {"limit": "0"}, "query.limit"),
        ("/v1/apps", {"limit": "201"}, "query.limit"),
        ("/v1/apps", {"cursor": "%%%"}, "cursor"),
        ("/v1/notifications", {"state": "lost"}, "state"),
        ("/v1/notifications", {"cursor": "\u00ff"}, "cursor"),
        ("/v1/apps/{app}/devices", {"status": "gone"}, "query.status"),
        ("/v1/apps/{app}/devices", {"platform": "windows"}, "query.platform"),
    ],
)
async def test_bad_parameters_are_problem_json_400(
    client: httpx.AsyncClient,
    tenants: TenantFactory,
    path: str,
    params: dict[str, str],
    field: str,
) -> None:
    tenant = await tenants.make()
    response = await client.get(path.format(app=tenant.app.id), params=params, headers=auth(tenant))
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert field in response.text


async def test_lists_need_a_key(client: httpx.AsyncClient, tenants: TenantFactory) -> None:
    tenant = await tenants.make()
    for path in ("/v1/apps", "/v1/notifications", f"/v1/apps/{tenant.app.id}/devices"):
        response = await client.get(path)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
