"""Tags, language and segments through the native API: registering with them, changing
them (`PATCH`, an update on `push.registrations`), applying an update as feedback does,
listing devices by tag, and sending to a segment (`to.filters`)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core import topics
from services.core.events import (
    Interaction,
    RegisterDevice,
    SendRequest,
    UpdateDevice,
    utc_now,
)
from services.core.settings import Settings
from services.core.store.client import Document
from services.core.store.devices import DevicesRepository
from services.core.tokens import hash_token
from services.core.topics import device_key
from services.feedback.deliveries import apply_interactions
from services.ingest.commands import command_key
from tests.contract.conftest import Tenant, TenantFactory
from tests.integration.kafka_io import read
from tests.registrations import Tap

pytestmark = pytest.mark.integration


def auth(tenant: Tenant) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.api_key}"}


async def stored(
    db: AsyncDatabase[Document],
    tenant: Tenant,
    token: str,
    *,
    tags: dict[str, Any] | None = None,
    language: str | None = None,
) -> str:
    """A device of the tenant's app as feedback stores it; its id (the token's hash)."""
    command = RegisterDevice.model_validate(
        {
            "request_id": uuid.uuid4().hex,
            "account_id": tenant.account_id,
            "app_id": tenant.app.id,
            "platform": "android",
            "token": token,
            "tags": tags,
            "language": language,
        }
    )
    await DevicesRepository(db).register(command, "fcm", hash_token(token))
    return hash_token(token)


async def test_registering_with_tags_and_language(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory
) -> None:
    tenant = await tenants.make()
    body = {
        "platform": "android",
        "token": "fcm-tagged",
        "tags": {"plan": "pro", "age": 31, "score": 2.5},
        "language": "pt-BR",
    }
    response = await client.post(
        f"/v1/apps/{tenant.app.id}/devices", json=body, headers=auth(tenant)
    )
    assert response.status_code == 202, response.text
    [(_, command)] = await tap.drain(tenant.app.id)
    assert isinstance(command, RegisterDevice)
    assert command.tags == {"plan": "pro", "age": 31, "score": 2.5}
    assert command.language == "pt-br"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tags": {"Plan": "pro"}}, "tags.Plan"),
        ({"tags": {"plan": True}}, "tags.plan"),
        ({"tags": {"plan": "x" * 257}}, "tags.plan"),
        ({"tags": {f"t{i}": i for i in range(51)}}, "tags"),
        ({"tags": ["plan"]}, "tags"),
        ({"language": "portuguese please"}, "language"),
        ({"language": 7}, "language"),
    ],
)
async def test_bad_tags_and_languages_are_400(
    client: httpx.AsyncClient,
    tap: Tap,
    tenants: TenantFactory,
    change: dict[str, Any],
    field: str,
) -> None:
    tenant = await tenants.make()
    body = {"platform": "android", "token": "fcm-bad", **change}
    response = await client.post(
        f"/v1/apps/{tenant.app.id}/devices", json=body, headers=auth(tenant)
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert any(e["field"].startswith(field) for e in response.json()["errors"])
    assert await tap.drain(tenant.app.id) == []


async def test_patching_a_device_publishes_its_update_keyed_by_the_device(
    client: httpx.AsyncClient,
    ingest_settings: Settings,
    tenants: TenantFactory,
    db: AsyncDatabase[Document],
) -> None:
    tenant = await tenants.make()
    device = await stored(db, tenant, "fcm/patched", tags={"plan": "free", "old": 1})
    patch = {"tags": {"plan": "pro", "old": None, "age": 40}, "language": "EN-gb"}
    response = await client.patch(
        f"/v1/apps/{tenant.app.id}/devices/{device}", json=patch, headers=auth(tenant)
    )
    assert response.status_code == 202, response.text
    request_id = response.json()["request_id"]
    update = await read(
        ingest_settings,
        topics.REGISTRATIONS,
        lambda m: isinstance(m, UpdateDevice) and m.request_id == request_id,
    )
    assert isinstance(update, UpdateDevice)
    assert (update.token, update.tags, update.removed_tags) == (
        "fcm/patched",
        {"plan": "pro", "age": 40},
        ["old"],
    )
    assert (update.language, update.remove_language) == ("en-gb", False)
    assert command_key(update) == device_key(tenant.app.id, device)

    # Applied as feedback applies it: a merge, the device found by `_id`.
    assert await DevicesRepository(db).update(update)
    shown = await client.get(f"/v1/apps/{tenant.app.id}/devices/{device}", headers=auth(tenant))
    assert (shown.json()["tags"], shown.json()["language"]) == (
        {"plan": "pro", "age": 40},
        "en-gb",
    )

    cleared = await client.patch(
        f"/v1/apps/{tenant.app.id}/devices/{device}",
        json={"tags": None, "language": None},
        headers=auth(tenant),
    )
    assert cleared.status_code == 202
    cleared_id = cleared.json()["request_id"]
    removal = await read(
        ingest_settings,
        topics.REGISTRATIONS,
        lambda m: isinstance(m, UpdateDevice) and m.request_id == cleared_id,
    )
    assert isinstance(removal, UpdateDevice)
    assert (removal.tags, sorted(removal.removed_tags), removal.remove_language) == (
        {},
        ["age", "plan"],
        True,
    )
    assert await DevicesRepository(db).update(removal)
    again = await client.get(f"/v1/apps/{tenant.app.id}/devices/{device}", headers=auth(tenant))
    assert (again.json()["tags"], again.json()["language"]) == ({}, None)
    assert "fcm/patched" not in again.text


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({}, ""),
        ({"platform": "ios"}, ""),
        ({"tags": {"a.b": 1}}, "tags.a.b.[key]"),
        ({"tags": {f"n{i}": i for i in range(49)}}, "tags"),
        ({"language": "x"}, "language"),
        ([], ""),
    ],
)
async def test_bad_patches_are_400(
    client: httpx.AsyncClient,
    tenants: TenantFactory,
    db: AsyncDatabase[Document],
    patch: object,
    field: str,
) -> None:
    tenant = await tenants.make()
    # Two tags already: 49 more would be 51.
    device = await stored(db, tenant, "fcm-full", tags={"a": 1, "b": 2})
    response = await client.patch(
        f"/v1/apps/{tenant.app.id}/devices/{device}", json=patch, headers=auth(tenant)
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert any(e["field"] == field for e in response.json()["errors"]), response.text


async def test_patching_a_device_of_no_app_of_yours_is_404(
    client: httpx.AsyncClient, tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    tenant, other = await tenants.make(), await tenants.make()
    theirs = await stored(db, other, "fcm-theirs")
    body = {"tags": {"plan": "pro"}}
    for app_id, device in (
        (tenant.app.id, theirs),
        (tenant.app.id, hash_token("never")),
        (other.app.id, theirs),
    ):
        response = await client.patch(
            f"/v1/apps/{app_id}/devices/{device}", json=body, headers=auth(tenant)
        )
        assert response.status_code == 404, response.text


async def test_an_update_applies_to_the_accounts_device_only_and_keeps_the_tag_bound(
    tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    tenant, other = await tenants.make(), await tenants.make()
    device = await stored(db, tenant, "fcm-bound", tags={f"k{i}": i for i in range(50)})
    devices = DevicesRepository(db)

    def update(account_id: str, **fields: Any) -> UpdateDevice:
        return UpdateDevice.model_validate(
            {
                "request_id": uuid.uuid4().hex,
                "account_id": account_id,
                "app_id": tenant.app.id,
                "token": "fcm-bound",
                **fields,
            }
        )

    assert not await devices.update(update(tenant.account_id, tags={"one_more": 1}))
    assert not await devices.update(update(other.account_id, removed_tags=["k0"]))
    assert not await devices.update(
        UpdateDevice(
            request_id="r", account_id=tenant.account_id, app_id=tenant.app.id, token="gone"
        )
    )
    # Removing one makes room for another, in the same update.
    assert await devices.update(update(tenant.account_id, tags={"new": "x"}, removed_tags=["k0"]))
    found = await devices.find(tenant.app.id, device)
    assert found is not None
    assert len(found["tags"]) == 50
    assert found["tags"]["new"] == "x"
    assert "k0" not in found["tags"]


async def test_listing_devices_by_tag(
    client: httpx.AsyncClient, tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    tenant = await tenants.make()
    pro = await stored(db, tenant, "fcm-pro", tags={"plan": "pro", "age": 30})
    free = await stored(db, tenant, "fcm-free", tags={"plan": "free", "age": "30"})
    bare = await stored(db, tenant, "fcm-bare")

    async def listed(*tags: str, contact: bool = False) -> set[str]:
        params: dict[str, Any] = {"tag": list(tags)}
        response = await client.get(
            f"/v1/apps/{tenant.app.id}/devices", params=params, headers=auth(tenant)
        )
        assert response.status_code == 200, response.text
        return {d["id"] for d in response.json()["devices"]}

    assert await listed("plan:pro") == {pro}
    assert await listed("plan") == {pro, free}
    # A value that reads as a number matches the number and the string.
    assert await listed("age:30") == {pro, free}
    assert await listed("age:30", "plan:free") == {free}
    assert await listed("plan:team") == set()
    assert await listed() == {pro, free, bare}
    response = await client.get(
        f"/v1/apps/{tenant.app.id}/devices", params={"tag": "Plan:pro"}, headers=auth(tenant)
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "tag"


async def test_sending_to_a_segment(
    client: httpx.AsyncClient, tenants: TenantFactory, ingest_settings: Settings
) -> None:
    tenant = await tenants.make()
    segment = {
        "or": [
            {"and": [{"tag": "plan", "in": ["pro", "team"]}, {"tag": "age", "gte": 18}]},
            {"language": "pt-BR"},
        ]
    }
    body = {
        "app_id": tenant.app.id,
        "to": {"filters": segment, "platforms": ["android"]},
        "notification": {"title": "Oferta"},
        "options": {"dry_run": True},
    }
    response = await client.post("/v1/notifications", json=body, headers=auth(tenant))
    assert response.status_code == 202, response.text
    notification_id = response.json()["id"]
    send = await read(
        ingest_settings,
        topics.SEND_REQUESTS,
        lambda m: isinstance(m, SendRequest) and m.notification_id == notification_id,
    )
    assert isinstance(send, SendRequest)
    assert send.to.filters is not None
    assert send.to.filters.model_dump(mode="json", exclude_none=True) == {
        "or": [
            {"and": [{"tag": "plan", "in": ["pro", "team"]}, {"tag": "age", "gte": 18}]},
            {"language": "pt-br"},
        ]
    }
    assert (send.to.all, send.to.platforms, send.options.dry_run) == (False, ["android"], True)
    status = await client.get(f"/v1/notifications/{notification_id}", headers=auth(tenant))
    assert status.json()["audience"]["filters"] == send.to.filters.model_dump(
        mode="json", exclude_none=True
    )


@pytest.mark.parametrize(
    ("to", "options", "field"),
    [
        ({"filters": {"tag": "plan"}}, {}, "to.filters"),
        ({"filters": {"nope": 1}}, {}, "to.filters"),
        ({"filters": {"platform": "ios"}, "all": True}, {}, "to"),
        ({"filters": {"platform": "ios"}, "contact_ids": ["ana"]}, {}, "to"),
        ({"filters": {"platform": "ios"}}, {"send_to": "latest"}, "options.send_to"),
        ({"filters": {"registered": {"before": "yesterday"}}}, {}, "to.filters.registered.before"),
        # Fields are named by their JSON path.
        (
            {"filters": {"or": [{"and": [{"or": [{"platform": "ios"}]}]}]}},
            {},
            "to.filters.or[0].and[0]",
        ),
        ({"filters": {"and": [{"tag": "plan", "in": [True]}]}}, {}, "to.filters.and[0].in[0]"),
    ],
)
async def test_bad_segments_are_400(
    client: httpx.AsyncClient,
    tenants: TenantFactory,
    db: AsyncDatabase[Document],
    to: dict[str, Any],
    options: dict[str, Any],
    field: str,
) -> None:
    tenant = await tenants.make()
    body = {
        "app_id": tenant.app.id,
        "to": to,
        "notification": {"title": "x"},
        "options": options,
    }
    response = await client.post("/v1/notifications", json=body, headers=auth(tenant))
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == [field], response.text
    assert await db.notifications.count_documents({}) == 0


async def test_a_reported_interaction_marks_its_device_active(
    client: httpx.AsyncClient, tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    tenant = await tenants.make()
    device = await stored(db, tenant, "fcm-active")
    later = utc_now() + timedelta(minutes=5)

    def opened(token_hash: str, at: datetime) -> Interaction:
        return Interaction(
            notification_id="n-1",
            app_id=tenant.app.id,
            token_hash=token_hash,
            interaction="opened",
            at=at,
        )

    await apply_interactions([opened(device, later), opened(hash_token("gone"), later)], db)
    # An older report does not move it back.
    await apply_interactions([opened(device, later - timedelta(hours=1))], db)
    shown = await client.get(f"/v1/apps/{tenant.app.id}/devices/{device}", headers=auth(tenant))
    assert datetime.fromisoformat(shown.json()["last_active_at"]) == later.replace(
        microsecond=later.microsecond // 1000 * 1000
    )
    # A report about a device that is gone does not bring it back.
    assert await DevicesRepository(db).find(tenant.app.id, hash_token("gone")) is None
