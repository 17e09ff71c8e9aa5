"""A broker slower to acknowledge than PUSHLINE_PUBLISH_TIMEOUT_SECONDS: the caller gets a
503 with Retry-After in its dialect's shape instead of a request that hangs, for a
registration and for a send alike."""

from __future__ import annotations

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core.settings import Settings
from services.core.store.client import Document
from tests.contract.conftest import TenantFactory
from tests.dialects import Shape, cij, masiv, problem_json, routee

pytestmark = pytest.mark.integration


@pytest.fixture
def ingest_settings(ingest_settings: Settings) -> Settings:
    # No broker acknowledges this fast.
    return ingest_settings.model_copy(update={"publish_timeout_seconds": 1e-6})


@pytest.mark.parametrize("dialect", ["native", "routee", "cij", "masiv"])
async def test_an_unacknowledged_publish_is_a_503_with_retry_after(
    client: httpx.AsyncClient,
    tenants: TenantFactory,
    db: AsyncDatabase[Document],
    dialect: str,
) -> None:
    tenant = await tenants.make()
    bearer = {"Authorization": f"Bearer {tenant.api_key}"}
    app = tenant.app.id
    requests: dict[str, tuple[str, dict[str, str], object, Shape]] = {
        "native": (
            f"/v1/apps/{app}/devices",
            bearer,
            {"platform": "android", "token": "tok-1"},
            problem_json,
        ),
        "routee": (
            "/messages/android",
            bearer,
            {"routeeContactId": "c-1", "token": "tok-1", "implementationId": app},
            routee,
        ),
        "cij": (
            f"/api/v1.0/orgs/{tenant.account_id}/pushdeviceregistration/devices",
            {},
            {"MobileAppId": app, "UserId": "u", "ApiToken": tenant.api_key, "FcmDeviceToken": "t"},
            cij,
        ),
        "masiv": (
            "/v1/association/create",
            bearer,
            {"token": "tok-1", "association": {"cellphone": "573141234567"}},
            masiv,
        ),
    }
    path, headers, body, shape = requests[dialect]
    response = await client.post(path, json=body, headers=headers)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    shape(response, path)
    # Nothing was accepted, so no registration id stays issued.
    assert await db["registrations"].count_documents({}) == 0


@pytest.mark.parametrize("dialect", ["native", "masiv"])
async def test_an_unacknowledged_send_is_a_503_with_retry_after(
    client: httpx.AsyncClient, tenants: TenantFactory, dialect: str
) -> None:
    tenant = await tenants.make()
    requests: dict[str, tuple[str, object, Shape]] = {
        "native": (
            "/v1/notifications",
            {"app_id": tenant.app.id, "to": {"tokens": ["tok-1"]}, "notification": {"title": "T"}},
            problem_json,
        ),
        "masiv": (
            "/v1/notification/sendToList",
            {"tokens": ["tok-1"], "notification": {"title": "T", "message": "M"}},
            masiv,
        ),
    }
    path, body, shape = requests[dialect]
    response = await client.post(
        path, json=body, headers={"Authorization": f"Bearer {tenant.api_key}"}
    )
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    shape(response, path)
