"""The native API: devices, batch, cleanup and registration status, problem+json errors."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core.events import (
    CleanupDevices,
    FailureReason,
    RegisterDevice,
    RegistrationStatus,
)
from services.core.store.client import Document
from services.core.store.registrations import RegistrationsRepository
from services.core.tokens import hash_token
from services.core.topics import device_key
from tests.contract.conftest import SUBSCRIPTION_KEYS, Tenant, TenantFactory
from tests.registrations import Tap

pytestmark = pytest.mark.integration

SUBSCRIPTION = {
    "endpoint": "https://push.example.net/send/abc123",
    "keys": SUBSCRIPTION_KEYS,
}


Decision = tuple[RegistrationStatus, FailureReason | None]


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
    await RegistrationsRepository(db).set_status(
        registration_id,
        account_id=tenant.account_id,
        app_id=tenant.app.id,
        status="Failed",
        reason="DuplicateExists",
    )
    status = await client.get(f"/v1/registrations/{registration_id}", headers=auth(tenant.api_key))
    assert status.json()["status"] == "Failed"
    assert status.json()["failure_reason"] == "DuplicateExists"


async def test_a_registration_id_never_issued_to_the_caller_is_404(
    client: httpx.AsyncClient, tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    tenant = await tenants.make()
    other = await tenants.make()
    response = await client.post(
        f"/v1/apps/{tenant.app.id}/devices",
        json={"platform": "android", "token": "fcm-1"},
        headers=auth(tenant.api_key),
    )
    registration_id = response.json()["registration_id"]
    typo = registration_id[:-1] + ("0" if registration_id[-1] != "0" else "1")
    for api_key, asked in [
        (tenant.api_key, typo),
        (tenant.api_key, "anything"),
        (other.api_key, registration_id),
    ]:
        status = await client.get(f"/v1/registrations/{asked}", headers=auth(api_key))
        assert status.status_code == 404, asked
        assert status.headers["content-type"] == "application/problem+json"
        assert status.json()["detail"] == f"registration {asked} not found"
    own = await client.get(f"/v1/registrations/{registration_id}", headers=auth(tenant.api_key))
    assert (own.status_code, own.json()["status"]) == (200, "Pending")
    # What the feedback stage later decides replaces Pending.
    await RegistrationsRepository(db).set_status(
        registration_id,
        account_id=tenant.account_id,
        app_id=tenant.app.id,
        status="Success",
        reason=None,
    )
    own = await client.get(f"/v1/registrations/{registration_id}", headers=auth(tenant.api_key))
    assert (own.status_code, own.json()["status"]) == (200, "Success")


async def _decide_later(
    db: AsyncDatabase[Document], tenant: Tenant, tap: Tap, decisions: dict[str, Decision]
) -> None:
    """Decide the registrations of these tokens, as the feedback stage does, once they
    are on Kafka."""
    published: dict[str, str] = {}
    while not decisions.keys() <= published.keys():
        published |= {c.token: c.request_id for _, c in await tap.drain(tenant.app.id) if c.token}
        await asyncio.sleep(0.05)
    for token, (status, reason) in decisions.items():
        await RegistrationsRepository(db).set_status(
            published[token],
            account_id=tenant.account_id,
            app_id=tenant.app.id,
            status=status,
            reason=reason,
        )


async def test_wait_answers_once_the_registration_is_decided(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    tenant = await tenants.make()
    url = f"/v1/apps/{tenant.app.id}/devices?wait=10"
    decisions: list[Decision] = [("Success", None), ("Failed", "DeviceTokenTooLong")]
    for decision in decisions:
        deciding = asyncio.create_task(_decide_later(db, tenant, tap, {"fcm-1": decision}))
        response = await client.post(
            url, json={"platform": "android", "token": "fcm-1"}, headers=auth(tenant.api_key)
        )
        await deciding
        assert response.status_code == 200, response.text
        registration_id = response.json()["registration_id"]
        assert response.json() == {
            "registration_id": registration_id,
            "status": decision[0],
            "failure_reason": decision[1],
        }
        assert response.headers["location"] == f"/v1/registrations/{registration_id}"


async def test_wait_answers_202_pending_at_the_deadline(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory
) -> None:
    tenant = await tenants.make()
    started = time.monotonic()
    response = await client.post(
        f"/v1/apps/{tenant.app.id}/devices?wait=0.5",
        json={"platform": "android", "token": "fcm-1"},
        headers=auth(tenant.api_key),
    )
    assert time.monotonic() - started >= 0.5
    assert response.status_code == 202
    assert response.json()["status"] == "Pending"
    assert len(await tap.drain(tenant.app.id)) == 1


async def test_wait_on_a_batch_answers_200_once_all_are_decided(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    tenant = await tenants.make()
    devices = [{"platform": "android", "token": f"t-{i}"} for i in range(2)]
    decisions: list[Decision] = [("Success", None), ("Failed", "DuplicateExists")]
    deciding = asyncio.create_task(
        _decide_later(db, tenant, tap, {"t-0": decisions[0], "t-1": decisions[1]})
    )
    response = await client.post(
        f"/v1/apps/{tenant.app.id}/devices:batch?wait=10",
        json={"devices": devices},
        headers=auth(tenant.api_key),
    )
    await deciding
    assert response.status_code == 200, response.text
    shown = response.json()["registrations"]
    assert [(r["status"], r["failure_reason"]) for r in shown] == decisions

    # One decided, one not: 202 at the deadline, with each one's status.
    deciding = asyncio.create_task(_decide_later(db, tenant, tap, {"t-0": ("Success", None)}))
    response = await client.post(
        f"/v1/apps/{tenant.app.id}/devices:batch?wait=1",
        json={"devices": devices},
        headers=auth(tenant.api_key),
    )
    await deciding
    assert response.status_code == 202
    assert [r["status"] for r in response.json()["registrations"]] == ["Success", "Pending"]


@pytest.mark.parametrize("wait", ["abc", "", "-1", "30.5", "nan", "inf"])
@pytest.mark.parametrize("path", ["devices", "devices:batch"])
async def test_a_bad_wait_is_400_and_publishes_nothing(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory, path: str, wait: str
) -> None:
    tenant = await tenants.make()
    device = {"platform": "android", "token": "t"}
    response = await client.post(
        f"/v1/apps/{tenant.app.id}/{path}?wait={wait}",
        json=device if path == "devices" else {"devices": [device]},
        headers=auth(tenant.api_key),
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"] == [
        {"field": "wait", "message": "must be a number of seconds from 0 to 30"}
    ]
    assert await tap.drain(tenant.app.id) == []


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
