"""A key of account A can neither register into, clean up, send to, read, nor learn of
anything of account B: every endpoint answers exactly as it does for an app, a
notification or a registration that does not exist, and nothing is published or stored."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core.store.client import Document
from services.core.store.devices import device_id
from tests.contract.conftest import Tenant, TenantFactory
from tests.devices import store_devices
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


async def native_batch(client: httpx.AsyncClient, caller: Tenant, app_id: str) -> httpx.Response:
    return await client.post(
        f"/v1/apps/{app_id}/devices:batch",
        json={"devices": [{"platform": "android", "token": "t"}]},
        headers={"Authorization": f"Bearer {caller.api_key}"},
    )


def _cij_item(caller: Tenant, app_id: str, token_field: str) -> dict[str, str]:
    return {"MobileAppId": app_id, "UserId": "u", "ApiToken": caller.api_key, token_field: "t"}


async def cij_batch(client: httpx.AsyncClient, caller: Tenant, app_id: str) -> httpx.Response:
    return await client.post(
        f"/api/v1.0/orgs/{caller.account_id}/pushdeviceregistration/devices/batch",
        json=[_cij_item(caller, app_id, "FcmDeviceToken")],
    )


async def cij_cleanup(client: httpx.AsyncClient, caller: Tenant, app_id: str) -> httpx.Response:
    return await client.post(
        f"/api/v1.0/orgs/{caller.account_id}/pushdeviceregistration/devices/cleanup",
        json=_cij_item(caller, app_id, "DeviceToken"),
    )


async def cij_cleanup_batch(
    client: httpx.AsyncClient, caller: Tenant, app_id: str
) -> httpx.Response:
    return await client.post(
        f"/api/v1.0/orgs/{caller.account_id}/pushdeviceregistration/devices/cleanup/batch",
        json=[_cij_item(caller, app_id, "DeviceToken")],
    )


@pytest.mark.parametrize(
    "call",
    [
        routee,
        cij,
        cij_batch,
        cij_status,
        cij_cleanup,
        cij_cleanup_batch,
        masiv,
        native,
        native_batch,
        native_cleanup,
    ],
)
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


async def native_send(client: httpx.AsyncClient, caller: Tenant, app_id: str) -> httpx.Response:
    return await client.post(
        "/v1/notifications",
        json={"app_id": app_id, "to": {"contact_ids": ["ana"]}, "notification": {"title": "x"}},
        headers={"Authorization": f"Bearer {caller.api_key}"},
    )


async def masiv_send(client: httpx.AsyncClient, caller: Tenant, app_id: str) -> httpx.Response:
    return await client.post(
        "/v1/notification/sendToList",
        json={
            "tokensByAssociation": {"appId": app_id, "emails": ["a@b.co"]},
            "notification": {"title": "x", "message": "y"},
        },
        headers={"Authorization": f"Bearer {caller.api_key}"},
    )


async def contact(client: httpx.AsyncClient, caller: Tenant, app_id: str) -> httpx.Response:
    return await client.get(
        f"/v1/apps/{app_id}/contacts/ana", headers={"Authorization": f"Bearer {caller.api_key}"}
    )


@pytest.mark.parametrize("call", [native_send, masiv_send, contact])
async def test_another_accounts_app_cannot_be_sent_to_nor_its_contacts_read(
    client: httpx.AsyncClient, tenants: TenantFactory, db: AsyncDatabase[Document], call: Call
) -> None:
    owner = await tenants.make(package_names=["com.owner.app"])
    intruder = await tenants.make()
    await store_devices(
        db,
        [
            {
                "_id": device_id(owner.app.id, "h"),
                "app_id": owner.app.id,
                "account_id": owner.account_id,
                "contact_id": "ana",
                "email": "a@b.co",
                "platform": "android",
                "provider": "fcm",
                "token": "t",
                "token_hash": "h",
                "status": "active",
            }
        ],
    )
    target = "com.owner.app" if call is masiv_send else owner.app.id
    missing = "com.nobody.app" if call is masiv_send else "no-such-app"
    foreign = await call(client, intruder, target)
    absent = await call(client, intruder, missing)
    assert foreign.status_code == absent.status_code
    assert foreign.status_code in (400, 404)
    assert _without(foreign, target) == _without(absent, missing)
    assert await db.notifications.count_documents({}) == 0


async def test_another_accounts_notification_is_answered_as_a_missing_one(
    client: httpx.AsyncClient, tenants: TenantFactory
) -> None:
    owner = await tenants.make()
    intruder = await tenants.make()
    sent = await native_send(client, owner, owner.app.id)
    notification_id = sent.json()["id"]
    as_intruder = {"Authorization": f"Bearer {intruder.api_key}"}
    for asked in (notification_id, "no-such-notification"):
        status = await client.get(f"/v1/notifications/{asked}", headers=as_intruder)
        event = await client.post(
            "/v1/events",
            json={"notification_id": asked, "token": "t", "type": "opened"},
            headers=as_intruder,
        )
        assert (status.status_code, event.status_code) == (404, 404)
        assert _without(status, asked) == _without(
            await client.get("/v1/notifications/nothing", headers=as_intruder), "nothing"
        )


async def test_another_accounts_registration_reads_as_never_issued(
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
    as_intruder = {"Authorization": f"Bearer {intruder.api_key}"}
    answer = await client.get("/v1/registrations/reg-1", headers=as_intruder)
    never = await client.get("/v1/registrations/reg-2", headers=as_intruder)
    assert (answer.status_code, never.status_code) == (404, 404)
    assert _without(answer, "reg-1") == _without(never, "reg-2")
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
