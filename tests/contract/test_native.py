"""The native API: devices, batch, cleanup and registration status, problem+json errors."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core.events import CleanupDevices, RegisterDevice
from services.core.store.client import Document
from services.core.tokens import hash_token
from services.core.topics import device_key
from tests.contract.conftest import SUBSCRIPTION_KEYS, TenantFactory
from tests.registrations import Tap

pytestmark = pytest.mark.integration

SUBSCRIPTION = {
    "endpoint": "https://push.example.net/send/abc123",
    "keys": SUBSCRIPTION_KEYS,
}


def auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


async def test_register_a_device_and_read_its_status(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    tenant = await tenants.make()
    body = {
        "platform": "android",
        "token": "fcm-1",
        "contact_id": "c-1",
        "cellphone": "+573141234567",
        "email": "Ana@Example.com",
    }
    response = await client.post(
        f"/v1/apps/{tenant.app.id}/devices", json=body, headers=auth(tenant.api_key)
    )
    assert response.status_code == 202
    registration_id = response.json()["registration_id"]
    assert response.json()["status"] == "Pending"
    assert response.headers["location"] == f"/v1/registrations/{registration_id}"
    [(key, command)] = await tap.drain(tenant.app.id)
    assert key == device_key(tenant.app.id, hash_token("fcm-1"))
    assert isinstance(command, RegisterDevice)
    assert command.request_id == registration_id
    assert (command.contact_id, command.cellphone, command.email) == (
        "c-1",
        "573141234567",
        "ana@example.com",
    )
    assert command.track is True
    status = await client.get(f"/v1/registrations/{registration_id}", headers=auth(tenant.api_key))
    assert status.json() == {
        "registration_id": registration_id,
        "status": "Pending",
        "failure_reason": None,
    }
    now = datetime.now(UTC)
    await db["registrations"].insert_one(
        {
            "_id": registration_id,
            "app_id": tenant.app.id,
            "account_id": tenant.account_id,
            "status": "Failed",
            "failure_reason": "DuplicateExists",
            "created": now,
            "updated": now,
        }
    )
    status = await client.get(f"/v1/registrations/{registration_id}", headers=auth(tenant.api_key))
    assert status.json()["status"] == "Failed"
    assert status.json()["failure_reason"] == "DuplicateExists"


async def test_registering_again_is_accepted_the_same_way(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory
) -> None:
    tenant = await tenants.make()
    body = {"platform": "ios", "token": "c" * 64, "contact_id": "c-1"}
    for _ in range(2):
        response = await client.post(
            f"/v1/apps/{tenant.app.id}/devices", json=body, headers=auth(tenant.api_key)
        )
        assert response.status_code == 202
    published = [c for _, c in await tap.drain(tenant.app.id)]
    assert all(isinstance(c, RegisterDevice) for c in published)
    assert [(c.platform, c.token) for c in published if isinstance(c, RegisterDevice)] == [
        ("ios", "c" * 64)
    ] * 2


async def test_a_web_push_subscription_is_keyed_by_its_endpoint(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory
) -> None:
    tenant = await tenants.make()
    response = await client.post(
        f"/v1/apps/{tenant.app.id}/devices",
        json={"platform": "web", "subscription": SUBSCRIPTION, "contact_id": "c-9"},
        headers=auth(tenant.api_key),
    )
    assert response.status_code == 202
    [(key, command)] = await tap.drain(tenant.app.id)
    assert isinstance(command, RegisterDevice)
    assert command.token == SUBSCRIPTION["endpoint"]
    assert command.subscription is not None
    assert command.subscription.keys.auth == SUBSCRIPTION_KEYS["auth"]
    assert key == device_key(tenant.app.id, hash_token(str(SUBSCRIPTION["endpoint"])))


async def test_batch_and_cleanup(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory
) -> None:
    tenant = await tenants.make()
    devices = [{"platform": "android", "token": f"t-{i}", "contact_id": "c"} for i in range(3)]
    response = await client.post(
        f"/v1/apps/{tenant.app.id}/devices:batch",
        json={"devices": devices},
        headers=auth(tenant.api_key),
    )
    assert response.status_code == 202
    ids = [r["registration_id"] for r in response.json()["registrations"]]
    published = {c.request_id: c.token for _, c in await tap.drain(tenant.app.id)}
    assert [published[i] for i in ids] == ["t-0", "t-1", "t-2"]
    response = await client.post(
        f"/v1/apps/{tenant.app.id}/devices:cleanup",
        json={"contact_id": "c"},
        headers=auth(tenant.api_key),
    )
    assert response.status_code == 202
    [(_, command)] = await tap.drain(tenant.app.id)
    assert isinstance(command, CleanupDevices)
    assert command.request_id == response.json()["request_id"]
    assert (command.contact_id, command.token) == ("c", None)


@pytest.mark.parametrize(
    ("path", "body", "errors"),
    [
        ("devices", {"token": "t"}, [("platform", "is required")]),
        (
            "devices",
            {"platform": "windows", "token": "t"},
            [("platform", "must be one of 'android', 'ios' or 'web'")],
        ),
        ("devices", {"platform": "android"}, [("", "give exactly one of token and subscription")]),
        (
            "devices",
            {"platform": "android", "token": "t" * 4097},
            [("token", "is too long (at most 4096 characters)")],
        ),
        ("devices", {"platform": "android", "token": True}, [("token", "must be a string")]),
        (
            "devices",
            {"platform": "android", "subscription": SUBSCRIPTION},
            [("", "a subscription is only for the web platform")],
        ),
        (
            "devices",
            {"platform": "android", "token": "t", "email": "nope"},
            [("email", "email is not a valid address")],
        ),
        ("devices:batch", {"devices": []}, [("devices", "must have at least 1 item(s)")]),
        (
            "devices:batch",
            {"devices": [{"platform": "android", "token": "t"}] * 101},
            [("devices", "must have at most 100 items")],
        ),
        (
            "devices:batch",
            {"devices": [{"platform": "android", "token": "t"}, {"token": "t"}]},
            [("devices[1].platform", "is required")],
        ),
        ("devices:cleanup", {}, [("", "give a contact_id, a token or both")]),
    ],
)
async def test_bad_input_is_problem_json_400_and_publishes_nothing(
    client: httpx.AsyncClient,
    tap: Tap,
    tenants: TenantFactory,
    db: AsyncDatabase[Document],
    path: str,
    body: object,
    errors: list[tuple[str, str]],
) -> None:
    tenant = await tenants.make()
    response = await client.post(
        f"/v1/apps/{tenant.app.id}/{path}", json=body, headers=auth(tenant.api_key)
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["type"], problem["title"], problem["status"]) == (
        "about:blank",
        "Bad Request",
        400,
    )
    assert [(e["field"], e["message"]) for e in problem["errors"]] == errors
    assert await tap.drain(tenant.app.id) == []
    assert await db["devices"].count_documents({}) == 0


async def test_malformed_json_and_missing_provider_are_400(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory
) -> None:
    tenant = await tenants.make(providers={})
    url = f"/v1/apps/{tenant.app.id}/devices"
    malformed = await client.post(url, content=b"{", headers=auth(tenant.api_key))
    assert malformed.status_code == 400
    assert malformed.json()["detail"] == "the body is not valid JSON"
    no_provider = await client.post(
        url, json={"platform": "android", "token": "t"}, headers=auth(tenant.api_key)
    )
    assert no_provider.status_code == 400
    assert no_provider.json()["errors"] == [
        {"field": "platform", "message": "the app has no provider configured for android"}
    ]
    assert await tap.drain(tenant.app.id) == []


async def test_unknown_key_is_401_and_unknown_app_404(
    client: httpx.AsyncClient, tenants: TenantFactory
) -> None:
    tenant = await tenants.make()
    body = {"platform": "android", "token": "t"}
    anonymous = await client.post(f"/v1/apps/{tenant.app.id}/devices", json=body)
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    missing = await client.post(
        "/v1/apps/no-such-app/devices", json=body, headers=auth(tenant.api_key)
    )
    assert missing.status_code == 404
    assert missing.json()["detail"] == "app no-such-app not found"
