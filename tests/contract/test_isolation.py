"""A key of account A can neither register into, read, nor learn of an app of account B:
every dialect answers exactly as it does for an app that does not exist."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core.store.client import Document
from tests.contract.conftest import Tenant, TenantFactory
from tests.registrations import Tap

pytestmark = pytest.mark.integration

Call = Callable[[httpx.AsyncClient, Tenant, str], Awaitable[httpx.Response]]


async def routee(client: httpx.AsyncClient, caller: Tenant, app_id: str) -> httpx.Response:
    return await client.post(
        "/messages/android",
        json={"routeeContactId": "c", "token": "t", "implementationId": app_id},
        headers={"Authorization": f"Bearer {caller.api_key}"},
    )


async def cij(client: httpx.AsyncClient, caller: Tenant, app_id: str) -> httpx.Response:
    return await client.post(
        f"/api/v1.0/orgs/{caller.account_id}/pushdeviceregistration/devices",
        json={
            "MobileAppId": app_id,
            "UserId": "u",
            "ApiToken": caller.api_key,
            "FcmDeviceToken": "t",
        },
    )


async def cij_status(client: httpx.AsyncClient, caller: Tenant, app_id: str) -> httpx.Response:
    return await client.post(
        f"/api/v1.0/orgs/{caller.account_id}/pushdeviceregistration/devices/status/",
        json={"RegistrationRequestIds": ["r"], "MobileAppId": app_id, "ApiToken": caller.api_key},
    )


async def masiv(client: httpx.AsyncClient, caller: Tenant, app_id: str) -> httpx.Response:
    return await client.post(
        "/v1/association/create",
        json={"appId": app_id, "token": "t", "association": {"email": "a@b.co"}},
        headers={"Authorization": f"Bearer {caller.api_key}"},
    )


async def native(client: httpx.AsyncClient, caller: Tenant, app_id: str) -> httpx.Response:
    return await client.post(
        f"/v1/apps/{app_id}/devices",
        json={"platform": "android", "token": "t"},
        headers={"Authorization": f"Bearer {caller.api_key}"},
    )


async def native_cleanup(client: httpx.AsyncClient, caller: Tenant, app_id: str) -> httpx.Response:
    return await client.post(
        f"/v1/apps/{app_id}/devices:cleanup",
        json={"token": "t"},
        headers={"Authorization": f"Bearer {caller.api_key}"},
    )


@pytest.mark.parametrize("call", [routee, cij, cij_status, masiv, native, native_cleanup])
async def test_another_accounts_app_is_answered_as_a_missing_one(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory, call: Call
) -> None:
    owner = await tenants.make(package_names=["com.owner.app"])
    intruder = await tenants.make()
    # Masiv names apps by package; the others by id.
    target = "com.owner.app" if call is masiv else owner.app.id
    missing = "com.nobody.app" if call is masiv else "no-such-app"
    foreign = await call(client, intruder, target)
    absent = await call(client, intruder, missing)
    assert foreign.status_code == absent.status_code
    assert foreign.status_code in (400, 404)
    assert _without(foreign, target) == _without(absent, missing)
    assert await tap.drain(owner.app.id) == []


async def test_another_accounts_registration_reads_as_pending(
    client: httpx.AsyncClient, tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    owner = await tenants.make()
    intruder = await tenants.make()
    now = datetime.now(UTC)
    await db["registrations"].insert_one(
        {
            "_id": "reg-1",
            "app_id": owner.app.id,
            "account_id": owner.account_id,
            "status": "Failed",
            "failure_reason": "DuplicateExists",
            "created": now,
            "updated": now,
        }
    )
    answer = await client.get(
        "/v1/registrations/reg-1", headers={"Authorization": f"Bearer {intruder.api_key}"}
    )
    assert answer.json() == {
        "registration_id": "reg-1",
        "status": "Pending",
        "failure_reason": None,
    }
    own = await client.get(
        "/v1/registrations/reg-1", headers={"Authorization": f"Bearer {owner.api_key}"}
    )
    assert own.json()["status"] == "Failed"


def _without(response: httpx.Response, name: str) -> str:
    # The answers may name the app asked for, and Masiv's carry a timestamp.
    body = response.json()
    if isinstance(body, dict):
        body.pop("timestamp", None)
    return str(body).replace(name, "APP")
