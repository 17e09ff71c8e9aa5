"""What the ingest tells its operators about each request: the request metrics, labelled by
route template."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import REGISTRY

from tests.contract.conftest import ADMIN_TOKEN, TenantFactory

pytestmark = pytest.mark.integration

CIJ = "/api/v1.0/orgs/{org_id}/pushdeviceregistration"


def requests_counted(route: str, status: int) -> float:
    labels = {"route": route, "status": str(status)}
    return REGISTRY.get_sample_value("pushline_ingest_requests_total", labels) or 0.0


async def test_each_dialect_is_counted_under_its_route_template(
    client: httpx.AsyncClient, tenants: TenantFactory
) -> None:
    tenant = await tenants.make()
    key = {"Authorization": f"Bearer {tenant.api_key}"}
    calls = [
        ("GET", "/v1/notifications/n-1", key, None, "/v1/notifications/{notification_id}", 404),
        (
            "POST",
            "/messages/android",
            key,
            {"routeeContactId": "c-1", "token": "t-1", "implementationId": tenant.app.id},
            "/messages/{device_type}",
            200,
        ),
        (
            "POST",
            f"/api/v1.0/orgs/{tenant.account_id}/pushdeviceregistration/devices/status/",
            {},
            {
                "ApiToken": tenant.api_key,
                "MobileAppId": tenant.app.id,
                "RegistrationRequestIds": ["r-1"],
            },
            CIJ + "/devices/status/",
            200,
        ),
        ("POST", "/v1/association/create", {}, {}, "/v1/association/create", 401),
        (
            "GET",
            f"/admin/v1/apps/{tenant.app.id}",
            {"Authorization": f"Bearer {ADMIN_TOKEN}"},
            None,
            "/admin/v1/apps/{app_id}",
            200,
        ),
        ("GET", "/healthz", {}, None, "/healthz", 200),
        ("GET", "/no/such/route", {}, None, "unmatched", 404),
    ]
    for method, path, headers, body, route, status in calls:
        before = requests_counted(route, status)
        response = await client.request(method, path, headers=headers, json=body)
        assert response.status_code == status, (path, response.text)
        assert requests_counted(route, status) == before + 1, route
    assert requests_counted("other", 200) == 0
