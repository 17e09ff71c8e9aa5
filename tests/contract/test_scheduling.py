"""Scheduled and cancelled sends through the native API, on the real Kafka and store:
`send_at` on a send, the `scheduled` state and `send_at` in its status and in the listing,
`DELETE /v1/notifications/{id}` and its errors."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core import topics
from services.core.events import SendRequest, utc_now
from services.core.settings import Settings
from services.core.store.client import Document
from tests.contract.conftest import TenantFactory
from tests.contract.test_sending import auth
from tests.integration.kafka_io import read

pytestmark = pytest.mark.integration


def send_body(app_id: str, **more: object) -> dict[str, object]:
    return {
        "app_id": app_id,
        "to": {"contact_ids": ["ana"]},
        "notification": {"title": "Oferta", "body": "Solo hoy"},
        **more,
    }


async def test_a_send_at_ahead_is_scheduled_and_shown(
    client: httpx.AsyncClient,
    tenants: TenantFactory,
    ingest_settings: Settings,
    db: AsyncDatabase[Document],
) -> None:
    tenant = await tenants.make()
    # Another offset than UTC names the same instant.
    send_at = (utc_now() + timedelta(hours=2)).replace(microsecond=0)
    bogota = send_at.astimezone(timezone(timedelta(hours=-5))).isoformat()
    assert bogota.endswith("-05:00")
    response = await client.post(
        "/v1/notifications",
        json=send_body(tenant.app.id, send_at=bogota),
        headers=auth(tenant.api_key),
    )
    assert response.status_code == 202, response.text
    notification_id = response.json()["id"]

    status = await client.get(f"/v1/notifications/{notification_id}", headers=auth(tenant.api_key))
    shown = status.json()
    assert shown["state"] == "scheduled"
    assert datetime.fromisoformat(shown["send_at"]) == send_at
    listed = await client.get(
        "/v1/notifications", params={"state": "scheduled"}, headers=auth(tenant.api_key)
    )
    assert listed.status_code == 200, listed.text
    [item] = listed.json()["notifications"]
    assert (item["id"], item["state"]) == (notification_id, "scheduled")
    assert datetime.fromisoformat(item["send_at"]) == send_at

    send = await read(
        ingest_settings,
        topics.SEND_REQUESTS,
        lambda m: isinstance(m, SendRequest) and m.notification_id == notification_id,
    )
    assert isinstance(send, SendRequest)
    assert send.send_at == send_at


async def test_a_send_at_in_the_past_sends_at_once(
    client: httpx.AsyncClient, tenants: TenantFactory
) -> None:
    tenant = await tenants.make()
    past = (utc_now() - timedelta(minutes=5)).isoformat()
    response = await client.post(
        "/v1/notifications",
        json=send_body(tenant.app.id, send_at=past),
        headers=auth(tenant.api_key),
    )
    assert response.status_code == 202, response.text
    status = await client.get(response.headers["Location"], headers=auth(tenant.api_key))
    assert status.json()["state"] == "accepted"


@pytest.mark.parametrize(
    ("send_at", "message"),
    [
        ("2030-01-01T10:00:00", "timezone"),
        ("tomorrow", "datetime"),
        # RFC 3339 text only, never a number.
        (1_900_000_000, "datetime"),
        ("far", "days ahead"),
    ],
)
async def test_a_bad_send_at_is_a_problem(
    client: httpx.AsyncClient, tenants: TenantFactory, send_at: object, message: str
) -> None:
    tenant = await tenants.make()
    if send_at == "far":
        send_at = (utc_now() + timedelta(days=31)).isoformat()
    response = await client.post(
        "/v1/notifications",
        json=send_body(tenant.app.id, send_at=send_at),
        headers=auth(tenant.api_key),
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    [problem] = response.json()["errors"]
    assert problem["field"] == "send_at"
    assert message in problem["message"].lower()


async def test_cancel_a_scheduled_send(
    client: httpx.AsyncClient, tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    tenant = await tenants.make()
    other = await tenants.make()
    send_at = (utc_now() + timedelta(days=1)).isoformat()
    response = await client.post(
        "/v1/notifications",
        json=send_body(tenant.app.id, send_at=send_at),
        headers=auth(tenant.api_key),
    )
    location = response.headers["Location"]

    foreign = await client.delete(location, headers=auth(other.api_key))
    assert foreign.status_code == 404
    assert foreign.headers["content-type"] == "application/problem+json"
    unknown = await client.delete("/v1/notifications/nope", headers=auth(tenant.api_key))
    assert unknown.status_code == 404
    anonymous = await client.delete(location)
    assert anonymous.status_code == 401

    cancelled = await client.delete(location, headers=auth(tenant.api_key))
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["state"] == "cancelled"
    assert cancelled.json()["counters"]["cancelled"] == 0
    again = await client.delete(location, headers=auth(tenant.api_key))
    assert (again.status_code, again.json()["state"]) == (202, "cancelled")
    status = await client.get(location, headers=auth(tenant.api_key))
    assert status.json()["state"] == "cancelled"
    stored = await db.notifications.find_one({"_id": response.json()["id"]})
    assert stored is not None
    assert stored["ended"] is not None


async def test_a_done_send_cannot_be_cancelled(
    client: httpx.AsyncClient, tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    tenant = await tenants.make()
    response = await client.post(
        "/v1/notifications", json=send_body(tenant.app.id), headers=auth(tenant.api_key)
    )
    notification_id = response.json()["id"]
    # What feedback records once every job has ended.
    await db.notifications.update_one({"_id": notification_id}, {"$set": {"state": "done"}})
    refused = await client.delete(response.headers["Location"], headers=auth(tenant.api_key))
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert "done" in refused.json()["detail"]
    status = await client.get(response.headers["Location"], headers=auth(tenant.api_key))
    assert status.json()["state"] == "done"
