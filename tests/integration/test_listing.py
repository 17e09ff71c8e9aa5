"""Listing, looking up and deleting through the real pipeline: a device registered on the
native API is listed once feedback stored it, and its deletion travels as a cleanup on the
device's partition, leaving the contact directory, in order with its registrations."""

from __future__ import annotations

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core.store.apps import App, NewApp
from services.core.store.client import Document
from services.core.tokens import hash_token
from tests.contract.conftest import TenantFactory
from tests.integration.kafka_io import eventually

pytestmark = pytest.mark.integration

# Long, with `/` and `:`: a device is named in URLs by its token's hash instead.
TOKEN = "fcm/registration:token-" + "x" * 150


@pytest.fixture
async def tenant(db: AsyncDatabase[Document]) -> tuple[App, dict[str, str]]:
    """A sandbox app (every provider, no credentials) and its account's Bearer header."""
    factory = TenantFactory(db)
    made = await factory.make(providers={})
    app = await factory.apps.create(
        NewApp(account_id=made.account_id, name="Sandbox", sandbox=True)
    )
    return app, {"Authorization": f"Bearer {made.api_key}"}


async def register(ingest: httpx.AsyncClient, app: App, auth: dict[str, str]) -> None:
    body = {"platform": "android", "token": TOKEN, "contact_id": "c-1"}
    response = await ingest.post(
        f"/v1/apps/{app.id}/devices", params={"wait": 20}, json=body, headers=auth
    )
    assert response.json()["status"] == "Success", response.text


@pytest.mark.usefixtures("workers")
async def test_a_registered_device_is_listed_then_deleted_in_order(
    ingest: httpx.AsyncClient, tenant: tuple[App, dict[str, str]]
) -> None:
    app, auth = tenant
    await register(ingest, app, auth)
    device = hash_token(TOKEN)
    listed = await ingest.get(f"/v1/apps/{app.id}/devices", headers=auth)
    assert [(d["id"], d["status"], d["contact_id"]) for d in listed.json()["devices"]] == [
        (device, "active", "c-1")
    ]
    assert TOKEN not in listed.text
    one = await ingest.get(f"/v1/apps/{app.id}/devices/{device}", headers=auth)
    assert one.json()["registered_at"] is not None

    deleted = await ingest.delete(f"/v1/apps/{app.id}/devices/{device}", headers=auth)
    assert deleted.status_code == 202

    async def gone() -> bool:
        found = await ingest.get(f"/v1/apps/{app.id}/devices/{device}", headers=auth)
        return found.status_code == 404

    await eventually(gone)
    # It left the contact directory: the contact has no device anywhere.
    contact = await ingest.get(f"/v1/apps/{app.id}/contacts/c-1", headers=auth)
    assert contact.json()["platforms"] == {}
    by_contact = await ingest.get(
        f"/v1/apps/{app.id}/devices", params={"contact_id": "c-1"}, headers=auth
    )
    assert by_contact.json() == {"devices": [], "next_cursor": None}

    # A deletion and a registration right after it apply in that order: the device is back.
    await ingest.delete(f"/v1/apps/{app.id}/devices/{device}", headers=auth)
    await register(ingest, app, auth)
    again = await ingest.get(f"/v1/apps/{app.id}/devices/{device}", headers=auth)
    assert again.status_code == 200


@pytest.mark.usefixtures("workers")
async def test_a_finished_send_is_listed_by_its_state(
    ingest: httpx.AsyncClient, tenant: tuple[App, dict[str, str]]
) -> None:
    app, auth = tenant
    await register(ingest, app, auth)
    body = {
        "app_id": app.id,
        "to": {"all": True},
        "notification": {"title": "Hola"},
        "options": {"dry_run": True},
    }
    sent = await ingest.post("/v1/notifications", json=body, headers=auth)
    assert sent.status_code == 202, sent.text
    notification_id = sent.json()["id"]

    async def done() -> list[dict[str, object]] | None:
        page = await ingest.get(
            "/v1/notifications", params={"app_id": app.id, "state": "done"}, headers=auth
        )
        found: list[dict[str, object]] = page.json()["notifications"]
        return found or None

    [listed] = await eventually(done)
    assert listed["id"] == notification_id
    assert listed["providers"] == {"fcm": 1}
    content = listed["content"]
    assert isinstance(content, dict)
    assert content["notification"]["title"] == "Hola"
    assert content["options"]["dry_run"] is True
    assert listed["audience"] == {
        "all": True,
        "tokens": 0,
        "contact_ids": 0,
        "cellphones": 0,
        "emails": 0,
        "platforms": [],
        "filters": None,
    }
