"""Per-account rate limits at the ingest: a call past its account's `requests` limit, or a
send past its app's `app_sends` limit, is answered 429 with `Retry-After` in the dialect's
own shape; the admin API sets the limits; the OpenAPI document lists the 429s."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core.store.client import Document
from services.core.store.limits import AccountLimits, Limits
from tests.contract.conftest import ADMIN_TOKEN, Tenant, TenantFactory
from tests.dialects import Shape, cij, masiv, problem_json, requests_of, routee

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# A send of a dialect: its path and body, for a caller and the app it names.
Send = Callable[[Tenant, str], tuple[str, dict[str, object]]]


def auth(tenant: Tenant) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.api_key}"}


def native_send(tenant: Tenant, app_id: str) -> tuple[str, dict[str, object]]:
    body: dict[str, object] = {
        "app_id": app_id,
        "to": {"contact_ids": ["ana"]},
        "notification": {"title": "x"},
    }
    return "/v1/notifications", body


def masiv_send(tenant: Tenant, app_id: str) -> tuple[str, dict[str, object]]:
    body: dict[str, object] = {
        "tokensByAssociation": {"appId": app_id, "emails": ["a@b.co"]},
        "notification": {"title": "x", "message": "y"},
    }
    return "/v1/notification/sendToList", body


def refused_in(response: httpx.Response, shape: Shape) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["Retry-After"]) >= 1
    shape(response, response.url.path)


@pytest.mark.parametrize(
    ("n", "shape"),
    [(0, problem_json), (1, routee), (2, masiv), (3, cij)],
    ids=["native", "routee", "masiv", "cij"],
)
async def test_calls_past_the_accounts_limit_are_refused_429_in_the_dialects_shape(
    client: httpx.AsyncClient,
    tenants: TenantFactory,
    db: AsyncDatabase[Document],
    n: int,
    shape: Shape,
) -> None:
    tenant = await tenants.make()
    other = await tenants.make()
    limits = Limits(requests_per_second=0.5, requests_burst=3)
    await AccountLimits(db).set(tenant.account_id, limits)
    await AccountLimits(db).set(other.account_id, limits)
    answers = []
    for index in range(4):
        path, headers, body, _ = requests_of(tenant, n + 4 * index)
        answers.append(await client.post(path, json=body, headers=headers))
    assert [a.status_code for a in answers[:3]] == [answers[0].status_code] * 3
    assert answers[0].status_code in (200, 202), answers[0].text
    refused_in(answers[3], shape)
    # A token every two seconds: the wait is a whole second or two.
    assert int(answers[3].headers["Retry-After"]) in (1, 2)
    # Another account has a bucket of its own.
    path, headers, body, _ = requests_of(other, n)
    assert (await client.post(path, json=body, headers=headers)).status_code in (200, 202)


async def test_every_route_of_the_account_draws_on_one_bucket(
    client: httpx.AsyncClient, tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    tenant = await tenants.make()
    await AccountLimits(db).set(
        tenant.account_id, Limits(requests_per_second=0.5, requests_burst=2)
    )
    assert (await client.get("/v1/apps", headers=auth(tenant))).status_code == 200
    path, headers, body, _ = requests_of(tenant, 1)
    assert (await client.post(path, json=body, headers=headers)).status_code == 200
    refused_in(await client.get("/v1/apps", headers=auth(tenant)), problem_json)
    # An unknown key is refused for what it is, and takes nothing.
    unknown = await client.get("/v1/apps", headers={"Authorization": "Bearer pl_nobody"})
    assert unknown.status_code == 401


@pytest.mark.parametrize(
    ("send", "shape"), [(native_send, problem_json), (masiv_send, masiv)], ids=["native", "masiv"]
)
async def test_sends_past_the_apps_limit_are_refused_and_other_apps_still_send(
    client: httpx.AsyncClient,
    tenants: TenantFactory,
    db: AsyncDatabase[Document],
    send: Send,
    shape: Shape,
) -> None:
    tenant = await tenants.make()
    second = await tenants.make()
    # The second app under the first tenant's account.
    await db.apps.update_one({"_id": second.app.id}, {"$set": {"account_id": tenant.account_id}})
    await AccountLimits(db).set(
        tenant.account_id, Limits(app_sends_per_second=0.2, app_sends_burst=2)
    )
    assert callable(send)
    answers = []
    for _ in range(3):
        path, body = send(tenant, tenant.app.id)
        answers.append(await client.post(path, json=body, headers=auth(tenant)))
    assert [a.status_code for a in answers[:2]] in ([202, 202], [200, 200]), answers[0].text
    refused_in(answers[2], shape)
    # Five seconds a send.
    assert 1 <= int(answers[2].headers["Retry-After"]) <= 5
    assert "sends of app" in answers[2].text
    path, body = send(tenant, second.app.id)
    assert (await client.post(path, json=body, headers=auth(tenant))).status_code in (200, 202)


async def test_the_admin_api_sets_and_shows_an_accounts_limits(
    client: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    tenants: TenantFactory,
) -> None:
    tenant = await tenants.make()
    url = f"/admin/v1/accounts/{tenant.account_id}/limits"
    shown = await admin.get(url, headers=ADMIN)
    assert shown.status_code == 200, shown.text
    assert shown.json()["limits"] == dict.fromkeys(Limits.model_fields)
    # Without limits of its own, the account has the operator's defaults.
    assert shown.json()["effective"]["requests_per_second"] == 1000.0

    changed = await admin.put(
        url, json={"requests_per_second": 0.5, "requests_burst": 1}, headers=ADMIN
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["limits"]["requests_burst"] == 1
    assert changed.json()["effective"]["requests_burst"] == 1
    assert changed.json()["effective"]["app_sends_per_second"] == 100.0
    assert (await admin.get(url, headers=ADMIN)).json() == changed.json()

    assert (await client.get("/v1/apps", headers=auth(tenant))).status_code == 200
    refused_in(await client.get("/v1/apps", headers=auth(tenant)), problem_json)


@pytest.mark.parametrize(
    "body",
    [
        {"requests_per_second": 0},
        {"requests_burst": 0.5},
        {"burst": 3},
        {"requests_per_second": "x"},
    ],
)
async def test_bad_limits_are_refused_400_and_change_nothing(
    admin: httpx.AsyncClient, tenants: TenantFactory, db: AsyncDatabase[Document], body: object
) -> None:
    tenant = await tenants.make()
    url = f"/admin/v1/accounts/{tenant.account_id}/limits"
    refused = await admin.put(url, json=body, headers=ADMIN)
    assert refused.status_code == 400, refused.text
    problem_json(refused, url)
    assert await AccountLimits(db).get(tenant.account_id) == Limits()


async def test_limits_of_no_such_account_are_404_and_need_the_admin_token(
    admin: httpx.AsyncClient,
) -> None:
    url = "/admin/v1/accounts/nobody/limits"
    assert (await admin.get(url, headers=ADMIN)).status_code == 404
    assert (await admin.put(url, json={}, headers=ADMIN)).status_code == 404
    assert (await admin.get(url)).status_code == 401


async def test_the_openapi_document_lists_429_with_retry_after_on_the_public_routes(
    client: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in (
        "/v1/notifications",
        "/v1/apps/{app_id}/devices",
        "/messages/{device_type}",
        "/v1/notification/sendToList",
        "/api/v1.0/orgs/{org_id}/pushdeviceregistration/devices",
    ):
        answer = paths[path]["post"]["responses"]["429"]
        assert "Retry-After" in answer["headers"], path
    admin_paths = (await admin.get("/openapi.json")).json()["paths"]
    assert "429" not in admin_paths["/admin/v1/accounts/{account_id}/limits"]["put"]["responses"]
