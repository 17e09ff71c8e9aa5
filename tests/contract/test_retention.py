"""Retention seen from the native API: an Idempotency-Key lives as long as the notification
it names, and is free for a new request once both are gone."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core.events import utc_now
from services.core.settings import Settings
from services.core.store.client import Document
from services.core.store.retention import Retention
from tests.contract.conftest import TenantFactory

pytestmark = pytest.mark.integration


async def test_an_idempotency_key_goes_with_its_notification(
    client: httpx.AsyncClient,
    tenants: TenantFactory,
    ingest_settings: Settings,
    db: AsyncDatabase[Document],
) -> None:
    tenant = await tenants.make()
    key = f"key-{uuid.uuid4()}"
    headers = {
        "Authorization": f"Bearer {tenant.api_key}",
        "Idempotency-Key": key,
    }
    body = {
        "app_id": tenant.app.id,
        "to": {"contact_ids": ["ana"]},
        "notification": {"title": "Hola", "body": "Mundo"},
    }
    first = await client.post("/v1/notifications", json=body, headers=headers)
    assert first.status_code == 202, first.text
    notification_id = first.json()["id"]
    key_id = f"{tenant.account_id}:{key}"
    assert await db.idempotency.count_documents({"_id": key_id}) == 1

    # A week on, the notification and its key are both kept.
    assert await Retention(db, ingest_settings, "worker").run(utc_now() + timedelta(days=8))
    again = await client.post("/v1/notifications", json=body, headers=headers)
    assert (again.status_code, again.json()["id"]) == (202, notification_id)

    assert await Retention(db, ingest_settings, "worker").run(utc_now() + timedelta(days=91))
    assert await db.notifications.count_documents({"_id": notification_id}) == 0
    assert await db.idempotency.count_documents({"_id": key_id}) == 0
    new = await client.post("/v1/notifications", json=body, headers=headers)
    assert new.status_code == 202, new.text
    assert new.json()["id"] != notification_id
