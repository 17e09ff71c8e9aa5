"""Device tokens the resolver would refuse are refused by the ingest first, in every dialect:
too long for their provider, control characters, surrounding whitespace, characters no push
token has, Web Push endpoints that are not https. Each is a 400 in the dialect's own shape
that publishes nothing (a 200 followed by a silent failure would leave the caller unaware)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx
import pytest

from services.core.events import RegisterDevice
from services.core.store.apps import NewApp
from tests.contract.conftest import SUBSCRIPTION_KEYS, Tenant, TenantFactory
from tests.registrations import Tap

pytestmark = pytest.mark.integration

TOO_LONG = "the token is longer than FCM issues (at most 1024 characters)"
CONTROL = "the token has control characters (such as NUL, CR or LF)"
WHITESPACE = "the token starts or ends with whitespace"
CHARACTERS = "the token has characters no push token has (only printable ASCII, no spaces)"
NOT_HTTPS = "the Web Push endpoint is not an https:// URL"

# (token sent as an Android/FCM token, the failure reason, the message)
BAD_TOKENS = [
    ("f" * 2000, "DeviceTokenTooLong", TOO_LONG),
    ("fcm\x00token", "FailedToStoreDevice", CONTROL),
    ("fcm\r\ntoken", "FailedToStoreDevice", CONTROL),
    ("fcm\x1btoken", "FailedToStoreDevice", CONTROL),
    (" fcm-token", "FailedToStoreDevice", WHITESPACE),
    ("fcm-token\n", "FailedToStoreDevice", WHITESPACE),
    ("fcm token", "FailedToStoreDevice", CHARACTERS),
    ("fcm\u200btoken", "FailedToStoreDevice", CHARACTERS),
]
# An FCM registration token as Firebase issues them: URL-safe base64 with a colon.
GOOD_TOKEN = "dQw4w9WgXcQ:APA91bH-" + "x_Y-z" * 30


def bearer(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


@dataclass(frozen=True)
class Answer:
    """A dialect's answer to one registration: its status and the messages it gave."""

    status: int
    messages: list[str]


async def native(http: httpx.AsyncClient, tenant: Tenant, token: str) -> Answer:
    response = await http.post(
        f"/v1/apps/{tenant.app.id}/devices",
        json={"platform": "android", "token": token},
        headers=bearer(tenant.api_key),
    )
    if response.status_code != 400:
        return Answer(response.status_code, [])
    assert response.headers["content-type"] == "application/problem+json"
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == ["token"]
    return Answer(400, [e["message"] for e in errors])


async def routee(http: httpx.AsyncClient, tenant: Tenant, token: str) -> Answer:
    body = {"routeeContactId": "c-1", "token": token, "implementationId": tenant.app.id}
    response = await http.post("/messages/android", json=body, headers=bearer(tenant.api_key))
    if response.status_code != 400:
        return Answer(response.status_code, [])
    answer = response.json()
    assert (answer["routeeContactId"], answer["error"]) == (
        "Device Config not found",
        "error occured",
    )
    return Answer(400, [d.removeprefix("token: ") for d in answer["details"]])


async def cij(http: httpx.AsyncClient, tenant: Tenant, token: str) -> Answer:
    body = {"MobileAppId": tenant.app.id, "UserId": "u-1", "ApiToken": tenant.api_key}
    response = await http.post(
        f"/api/v1.0/orgs/{tenant.account_id}/pushdeviceregistration/devices",
        json={**body, "FcmDeviceToken": token},
    )
    if response.status_code != 400:
        return Answer(response.status_code, [])
    answer = response.json()
    assert (answer["status"], list(answer["errors"])) == (400, ["FcmDeviceToken"])
    return Answer(400, answer["errors"]["FcmDeviceToken"])


async def masiv(http: httpx.AsyncClient, tenant: Tenant, token: str) -> Answer:
    body = {"token": token, "association": {"email": "ana@example.com"}, "deviceType": "Android"}
    response = await http.post("/v1/association/create", json=body, headers=bearer(tenant.api_key))
    if response.status_code != 400:
        return Answer(response.status_code, [])
    answer = response.json()
    assert (answer["error"], answer["path"]) == ("Bad Request", "/v1/association/create")
    return Answer(400, [answer["message"]])


DIALECTS = {"native": native, "routee": routee, "cij": cij, "masiv": masiv}


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("token", "reason", "message"), BAD_TOKENS)
async def test_a_token_the_resolver_would_refuse_is_a_400_in_every_dialect(
    client: httpx.AsyncClient,
    tap: Tap,
    tenants: TenantFactory,
    dialect: str,
    token: str,
    reason: str,
    message: str,
) -> None:
    tenant = await tenants.make()
    answer = await DIALECTS[dialect](client, tenant, token)
    # Customer Insights - Journeys names its failure reasons; the others say what is wrong.
    expected = f"{reason}: {message}" if dialect == "cij" else message
    assert answer == Answer(400, [expected])
    assert await tap.drain(tenant.app.id) == []


async def test_the_customer_insights_batch_names_the_item(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory
) -> None:
    tenant = await tenants.make()
    item = {"MobileAppId": tenant.app.id, "UserId": "u-1", "ApiToken": tenant.api_key}
    response = await client.post(
        f"/api/v1.0/orgs/{tenant.account_id}/pushdeviceregistration/devices/batch",
        json=[{**item, "FcmDeviceToken": GOOD_TOKEN}, {**item, "FcmDeviceToken": "f" * 2000}],
    )
    assert response.status_code == 400
    assert response.json()["errors"] == {"[1].FcmDeviceToken": [f"DeviceTokenTooLong: {TOO_LONG}"]}
    assert await tap.drain(tenant.app.id) == []


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_token_as_providers_issue_them_is_accepted(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory, dialect: str
) -> None:
    tenant = await tenants.make()
    answer = await DIALECTS[dialect](client, tenant, GOOD_TOKEN)
    assert answer.status in (200, 202)
    [(_, command)] = await tap.drain(tenant.app.id)
    assert isinstance(command, RegisterDevice)
    assert (command.token, command.platform) == (GOOD_TOKEN, "android")


def subscription(endpoint: str, **keys: str) -> dict[str, object]:
    return {"endpoint": endpoint, "keys": {**SUBSCRIPTION_KEYS, **keys}}


BAD_SUBSCRIPTIONS = [
    (subscription("file:///etc/passwd"), NOT_HTTPS),
    (subscription("gopher://push.example.net/x"), NOT_HTTPS),
    # Plain http only where private targets are allowed (the emulators): not here.
    (subscription("http://push.example.net/x"), NOT_HTTPS),
    (subscription("https:///no-host"), NOT_HTTPS),
    (
        subscription("https://push.example.net/x\r\nX-Evil: 1"),
        CONTROL.replace("token", "Web Push endpoint"),
    ),
    (
        subscription("https://push.example.net/x", p256dh="BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA"),
        "the subscription's p256dh key is not a P-256 public key in base64url",
    ),
    (
        subscription("https://push.example.net/x", auth="tBHItJI5svbpez7KI4CC"),
        "the subscription's auth secret is not 16 bytes in base64url",
    ),
]


@pytest.mark.parametrize(("subscription_", "message"), BAD_SUBSCRIPTIONS)
async def test_a_web_push_subscription_the_sender_could_not_use_is_refused_at_registration(
    client: httpx.AsyncClient,
    tap: Tap,
    tenants: TenantFactory,
    subscription_: dict[str, object],
    message: str,
) -> None:
    tenant = await tenants.make()
    headers = bearer(tenant.api_key)
    native_answer = await client.post(
        f"/v1/apps/{tenant.app.id}/devices",
        json={"platform": "web", "subscription": subscription_},
        headers=headers,
    )
    assert native_answer.status_code == 400
    assert native_answer.json()["errors"] == [{"field": "subscription", "message": message}]
    routee_answer = await client.post(
        "/messages/web",
        json={
            "routeeContactId": "c",
            "token": json.dumps(subscription_),
            "implementationId": tenant.app.id,
        },
        headers=headers,
    )
    assert routee_answer.status_code == 400
    assert routee_answer.json()["details"] == [f"token: {message}"]
    masiv_answer = await client.post(
        "/v1/association/create",
        json={"token": json.dumps(subscription_), "association": {"cellphone": "573141234567"}},
        headers=headers,
    )
    assert masiv_answer.status_code == 400
    assert masiv_answer.json()["message"] == message
    assert await tap.drain(tenant.app.id) == []


async def test_a_sandbox_app_takes_the_emulators_plain_http_endpoints(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory
) -> None:
    tenant = await tenants.make()
    sandbox = await tenants.apps.create(
        NewApp(account_id=tenant.account_id, name="Sandbox", sandbox=True)
    )
    local = subscription("http://127.0.0.1:9443/push/abc")
    response = await client.post(
        f"/v1/apps/{sandbox.id}/devices",
        json={"platform": "web", "subscription": local},
        headers=bearer(tenant.api_key),
    )
    assert response.status_code == 202, response.text
    [(_, command)] = await tap.drain(sandbox.id)
    assert isinstance(command, RegisterDevice)
    assert command.subscription is not None
    assert command.subscription.endpoint == local["endpoint"]
