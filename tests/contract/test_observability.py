"""What the ingest tells its operators about each request: the request metrics, labelled by
route template; one JSON access line per request; an audit line per admin action and per
refused key. No line holds a key, a token or a secret."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from prometheus_client import REGISTRY

from services.core.logging import JSONFormatter
from tests.contract.conftest import ADMIN_TOKEN, TenantFactory, apns_key

pytestmark = pytest.mark.integration

CIJ = "/api/v1.0/orgs/{org_id}/pushdeviceregistration"


def requests_counted(route: str, status: int) -> float:
    labels = {"route": route, "status": str(status)}
    return REGISTRY.get_sample_value("pushline_ingest_requests_total", labels) or 0.0


async def test_each_dialect_is_counted_under_its_route_template(
    client: httpx.AsyncClient, admin: httpx.AsyncClient, tenants: TenantFactory
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
        ("GET", "/messages/android", {}, None, "/messages/{device_type}", 405),
        ("GET", "/healthz", {}, None, "/healthz", 200),
        ("GET", "/no/such/route", {}, None, "unmatched", 404),
    ]
    for method, path, headers, body, route, status in calls:
        before = requests_counted(route, status)
        response = await client.request(method, path, headers=headers, json=body)
        assert response.status_code == status, (path, response.text)
        assert requests_counted(route, status) == before + 1, route
    # The admin listener's requests count in the same metrics, under the admin routes.
    before = requests_counted("/admin/v1/apps/{app_id}", 200)
    fetched = await admin.get(
        f"/admin/v1/apps/{tenant.app.id}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert fetched.status_code == 200, fetched.text
    assert requests_counted("/admin/v1/apps/{app_id}", 200) == before + 1
    assert requests_counted("other", 200) == 0


def lines(caplog: pytest.LogCaptureFixture, logger: str) -> list[dict[str, object]]:
    """The records of one logger as the JSON lines the services write."""
    formatter = JSONFormatter()
    found: list[dict[str, object]] = [
        json.loads(formatter.format(r)) for r in caplog.records if r.name == logger
    ]
    return found


def all_text(caplog: pytest.LogCaptureFixture) -> str:
    formatter = JSONFormatter()
    return "\n".join(formatter.format(record) for record in caplog.records)


async def test_each_request_writes_one_access_line(
    client: httpx.AsyncClient, tenants: TenantFactory, caplog: pytest.LogCaptureFixture
) -> None:
    tenant = await tenants.make()
    token = "device-token-" + tenant.app.id
    caplog.set_level(logging.INFO)
    mapped = await client.post(
        "/messages/Android",
        json={"routeeContactId": "c-1", "token": token, "implementationId": tenant.app.id},
        headers={"Authorization": f"Bearer {tenant.api_key}"},
    )
    assert mapped.status_code == 200, mapped.text
    refused = await client.get(
        "/v1/notifications/n-1", headers={"Authorization": "Bearer pl_not-a-key"}
    )
    assert refused.status_code == 401
    await client.get("/no/such/route")
    access = lines(caplog, "services.ingest.access")
    assert [(a["method"], a["route"], a["status"], a["account_id"]) for a in access] == [
        ("POST", "/messages/{device_type}", 200, tenant.account_id),
        ("GET", "/v1/notifications/{notification_id}", 401, None),
        ("GET", "unmatched", 404, None),
    ]
    assert all(isinstance(a["seconds"], float) and a["seconds"] >= 0 for a in access)
    for secret in (tenant.api_key, token, "pl_not-a-key"):
        assert secret not in all_text(caplog)


async def test_the_admin_listener_writes_its_own_access_lines(
    client: httpx.AsyncClient, admin: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    token = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    created = await admin.post("/admin/v1/accounts", json={"name": "Acme"}, headers=token)
    assert created.status_code == 201
    await admin.get("/admin/v1/apps/nope", headers={"Authorization": "Bearer wrong"})
    await admin.get("/healthz")
    await client.get("/healthz")
    access = lines(caplog, "services.ingest.admin_access")
    assert [(a["method"], a["route"], a["status"]) for a in access] == [
        ("POST", "/admin/v1/accounts", 201),
        ("GET", "/admin/v1/apps/{app_id}", 401),
        ("GET", "/healthz", 200),
    ]
    public = lines(caplog, "services.ingest.access")
    assert [(a["method"], a["route"], a["status"]) for a in public] == [("GET", "/healthz", 200)]
    text = all_text(caplog)
    assert ADMIN_TOKEN not in text
    assert created.json()["api_key"] not in text


async def test_admin_actions_and_refused_keys_are_audited(
    client: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    tenants: TenantFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tenant = await tenants.make()
    token = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    fcm_secret = "FCM-PRIVATE-KEY-" + tenant.app.id
    apns_secret = apns_key()
    caplog.set_level(logging.INFO)

    account = await admin.post("/admin/v1/accounts", json={"name": "Acme"}, headers=token)
    assert account.status_code == 201
    account_id, first_key = account.json()["id"], account.json()["api_key"]
    issued = await admin.post(f"/admin/v1/accounts/{account_id}/api-keys", headers=token)
    assert issued.status_code == 201
    service_account = {
        "type": "service_account",
        "project_id": "p",
        "private_key": fcm_secret,
        "client_email": "push@p.iam.gserviceaccount.com",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    body = {"account_id": account_id, "name": "App", "fcm": {"service_account": service_account}}
    created = await admin.post("/admin/v1/apps", json=body, headers=token)
    assert created.status_code == 201, created.text
    app_id = created.json()["id"]
    apns = {
        "team_id": "ABCDE12345",
        "key_id": "KEY1234567",
        "topic": "t",
        "private_key": apns_secret,
    }
    changes = {"name": "Renamed", "apns": apns, "fcm": None}
    changed = await admin.patch(f"/admin/v1/apps/{app_id}", json=changes, headers=token)
    assert changed.status_code == 200, changed.text
    renamed = await admin.patch(f"/admin/v1/apps/{app_id}", json={"name": "X"}, headers=token)
    assert renamed.status_code == 200

    wrong_admin = await admin.get(
        f"/admin/v1/apps/{app_id}", headers={"Authorization": "Bearer wrong-admin-token"}
    )
    assert wrong_admin.status_code == 401
    wrong_key = await client.post(
        "/v1/association/create", json={}, headers={"Authorization": "Bearer pl_guessed"}
    )
    assert wrong_key.status_code == 401
    other_org = await client.post(
        "/api/v1.0/orgs/another-org/pushdeviceregistration/devices/status/",
        json={"ApiToken": tenant.api_key, "MobileAppId": "m", "RegistrationRequestIds": ["r"]},
    )
    assert other_org.status_code == 400

    audit = lines(caplog, "services.core.audit")
    assert [(a["audit"], a["level"]) for a in audit] == [
        ("account_created", "INFO"),
        ("api_key_issued", "INFO"),
        ("app_created", "INFO"),
        ("app_changed", "INFO"),
        ("credentials_changed", "INFO"),
        ("app_changed", "INFO"),
        ("admin_token_refused", "WARNING"),
        ("api_key_refused", "WARNING"),
        ("api_key_refused", "WARNING"),
    ]
    assert all(a["client"] and a["method"] and a["route"] for a in audit)
    assert [a["account_id"] for a in audit[:6]] == [account_id] * 6
    assert [a.get("app_id") for a in audit[2:6]] == [app_id] * 4
    assert audit[2]["providers"] == ["fcm"]
    assert audit[3]["fields"] == ["apns", "fcm", "name"]
    assert audit[4]["providers"] == ["apns", "fcm"]
    assert audit[5]["fields"] == ["name"]
    assert audit[6]["route"] == "/admin/v1/apps/{app_id}"
    assert audit[7]["route"] == "/v1/association/create"
    assert audit[8]["org_id"] == "another-org"
    assert {a["via"] for a in audit} == {"admin_api", "api"}
    text = all_text(caplog)
    secrets = [ADMIN_TOKEN, "wrong-admin-token", "pl_guessed", first_key, issued.json()["api_key"]]
    for secret in [*secrets, tenant.api_key, fcm_secret, "BEGIN PRIVATE KEY"]:
        assert secret not in text
