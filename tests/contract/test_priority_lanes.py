"""The native send's `options.priority_lane`: on the send request as asked, absent when
not (the audience decides downstream), refused when unknown; and in the OpenAPI document."""

from __future__ import annotations

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core.settings import Settings
from services.core.store.client import Document
from services.ingest.app import create_app
from tests.contract.conftest import TenantFactory
from tests.contract.test_messages import auth, sent

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("to", "options", "lane"),
    [
        ({"contact_ids": ["ana"]}, {}, "transactional"),
        ({"all": True}, {}, "bulk"),
        ({"filters": {"tag": "plan", "eq": "gold"}}, {}, "bulk"),
        ({"contact_ids": ["ana"]}, {"priority_lane": "bulk"}, "bulk"),
        ({"all": True}, {"priority_lane": "transactional"}, "transactional"),
    ],
)
async def test_the_lane_reaches_the_topic(
    client: httpx.AsyncClient,
    tenants: TenantFactory,
    ingest_settings: Settings,
    to: dict[str, object],
    options: dict[str, object],
    lane: str,
) -> None:
    tenant = await tenants.make()
    body = {
        "app_id": tenant.app.id,
        "to": to,
        "notification": {"title": "Hola"},
        "options": options,
    }
    response = await client.post("/v1/notifications", json=body, headers=auth(tenant.api_key))
    assert response.status_code == 202, response.text
    send = await sent(ingest_settings, response.json()["id"])
    assert send.options.priority_lane == options.get("priority_lane")
    assert send.lane == lane


async def test_an_unknown_lane_is_a_problem(
    client: httpx.AsyncClient, tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    tenant = await tenants.make()
    body = {
        "app_id": tenant.app.id,
        "to": {"contact_ids": ["ana"]},
        "notification": {"title": "Hola"},
        "options": {"priority_lane": "urgent"},
    }
    response = await client.post("/v1/notifications", json=body, headers=auth(tenant.api_key))
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == ["options.priority_lane"]
    assert await db.notifications.count_documents({}) == 0


def test_the_lane_is_documented() -> None:
    schema = create_app(Settings()).openapi()
    send = schema["paths"]["/v1/notifications"]["post"]["requestBody"]
    options = send["content"]["application/json"]["schema"]["properties"]["options"]
    if "$ref" in options:
        options = schema["components"]["schemas"][options["$ref"].rsplit("/", 1)[1]]
    lane = options["properties"]["priority_lane"]
    assert "['transactional', 'bulk']" in str(lane)
    assert "to.all" in lane["description"]
