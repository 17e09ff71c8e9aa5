"""Seed 001 (Customer Insights - Journeys): the seed's sample bodies with this test's
org, app, tokens and API token in place of its placeholders."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core.events import CleanupDevices, RegisterDevice
from services.core.store.client import Document
from services.core.tokens import hash_token
from services.core.topics import device_key
from tests.contract.conftest import Tenant, TenantFactory
from tests.registrations import Tap

pytestmark = pytest.mark.integration

APNS_TOKEN = "a" * 64
FCM_TOKEN = "fcm-token:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx"
SEED_APP = "00000000-0000-0000-0000-000000000000"
BASE = "/api/v1.0/orgs/%ORG_ID%/pushdeviceregistration"

SINGLE_IOS = """{
"MobileAppId": "00000000-0000-0000-0000-000000000000",
"UserId": "00aa00aa-bb11-cc22-dd33-44ee44ee44ee",
"ApiToken": "%API_TOKEN%",
"ApnsDeviceToken": "%APNS_TOKEN%"
}"""
SINGLE_ANDROID = """{
"MobileAppId": "00000000-0000-0000-0000-000000000000",
"UserId": "00aa00aa-bb11-cc22-dd33-44ee44ee44ee",
"ApiToken": "%API_TOKEN%",
"FcmDeviceToken": "%FCM_TOKEN%"
}"""
BATCH_ANDROID = """[
{
"MobileAppId": "00000000-0000-0000-0000-000000000000",
"UserId": "00aa00aa-bb11-cc22-dd33-44ee44ee44ee",
"ApiToken": "%API_TOKEN%",
"FcmDeviceToken": "%FCM_TOKEN%"
},
{
"MobileAppId": "00000000-0000-0000-0000-000000000000",
"UserId": "00aa00aa-bb11-cc22-dd33-44ee44ee44ee",
"ApiToken": "%API_TOKEN%",
"FcmDeviceToken": "%FCM_TOKEN%"
}
]"""
STATUS = """{
"RegistrationRequestIds": [
"%REG_REQUEST_ID%"
],
"MobileAppId": "%MOBILE_APP_ID%",
"ApiToken": "%API_TOKEN%"
}"""
CLEANUP = """{
"MobileAppId": "00000000-0000-0000-0000-000000000000",
"ApiToken": "%API_TOKEN%",
"UserId": "00aa00aa-bb11-cc22-dd33-44ee44ee44ee",
"DeviceToken": "%OPTIONAL_FCM_OR_APNS_DEVICE_TOKEN%"
}"""
USER = "00aa00aa-bb11-cc22-dd33-44ee44ee44ee"


def fill(text: str, tenant: Tenant, **more: str) -> str:
    values = {
        "%ORG_ID%": tenant.account_id,
        "%API_TOKEN%": tenant.api_key,
        "%APNS_TOKEN%": APNS_TOKEN,
        "%FCM_TOKEN%": FCM_TOKEN,
        "%MOBILE_APP_ID%": tenant.app.id,
        "%OPTIONAL_FCM_OR_APNS_DEVICE_TOKEN%": FCM_TOKEN,
        SEED_APP: tenant.app.id,
        **more,
    }
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


def signed(api_token: str, url: str) -> str:
    digest = hmac.new(api_token.encode(), url.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


async def test_tracked_ios_registration_returns_its_id_and_carries_the_signed_callback(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory
) -> None:
    tenant = await tenants.make()
    url = "https://hooks.example.com/push/status?x=1"
    response = await client.post(
        fill(f"{BASE}/devices", tenant),
        content=fill(SINGLE_IOS, tenant),
        headers={
            "Content-Type": "application/json",
            "x-ms-track-registration": "true",
            "x-ms-callback-url": url,
            "x-ms-callback-url-headers": json.dumps({"X-Auth": "hook-secret"}),
        },
    )
    assert response.status_code == 202
    request_id = response.json()["RegistrationRequestId"]
    assert set(response.json()) == {"RegistrationRequestId"}
    [(key, command)] = await tap.drain(tenant.app.id)
    assert key == device_key(tenant.app.id, hash_token(APNS_TOKEN))
    assert isinstance(command, RegisterDevice)
    assert command.request_id == request_id
    assert (command.platform, command.token, command.contact_id) == ("ios", APNS_TOKEN, USER)
    assert command.track is True
    assert command.source == "cij"
    assert command.callback is not None
    assert command.callback.url == url
    assert command.callback.headers == {"X-Auth": "hook-secret"}
    assert command.callback.signature == signed(tenant.api_key, url)


async def test_untracked_android_registration_is_202_with_an_empty_body(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory
) -> None:
    tenant = await tenants.make()
    response = await client.post(
        fill(f"{BASE}/devices", tenant),
        content=fill(SINGLE_ANDROID, tenant),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 202
    assert response.content == b""
    [(_, command)] = await tap.drain(tenant.app.id)
    assert isinstance(command, RegisterDevice)
    assert (command.platform, command.token, command.track) == ("android", FCM_TOKEN, False)
    assert command.callback is None


async def test_the_status_callback_header_name_is_accepted_too(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory
) -> None:
    tenant = await tenants.make()
    url = "https://hooks.example.com/status"
    response = await client.post(
        fill(f"{BASE}/devices", tenant),
        content=fill(SINGLE_ANDROID, tenant),
        headers={"x-ms-status-callback-url": url},
    )
    assert response.status_code == 202
    [(_, command)] = await tap.drain(tenant.app.id)
    assert isinstance(command, RegisterDevice)
    assert command.callback is not None
    assert command.callback.url == url
    assert command.callback.signature == signed(tenant.api_key, url)


async def test_tracked_batch_returns_ids_in_request_order(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory
) -> None:
    tenant = await tenants.make()
    response = await client.post(
        fill(f"{BASE}/devices/batch", tenant),
        content=fill(BATCH_ANDROID, tenant),
        headers={"x-ms-track-registration": "true"},
    )
    assert response.status_code == 202
    ids = [item["RegistrationRequestId"] for item in response.json()]
    assert len(ids) == 2 == len(set(ids))
    published = await tap.drain(tenant.app.id)
    # Same token, same key, same partition: Kafka keeps the request order.
    assert [c.request_id for _, c in published] == ids


async def test_status_answers_in_the_order_asked(
    client: httpx.AsyncClient, tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    tenant = await tenants.make()
    other = await tenants.make()
    now = datetime.now(UTC)
    await db["registrations"].insert_many(
        [
            {
                "_id": "r-ok",
                "app_id": tenant.app.id,
                "account_id": tenant.account_id,
                "status": "Success",
                "failure_reason": None,
                "created": now,
                "updated": now,
            },
            {
                "_id": "r-bad",
                "app_id": tenant.app.id,
                "account_id": tenant.account_id,
                "status": "Failed",
                "failure_reason": "DryRunSendingFailed",
                "created": now,
                "updated": now,
            },
            {
                "_id": "r-other",
                "app_id": other.app.id,
                "account_id": other.account_id,
                "status": "Success",
                "failure_reason": None,
                "created": now,
                "updated": now,
            },
        ]
    )
    body = json.loads(fill(STATUS, tenant))
    body["RegistrationRequestIds"] = ["r-bad", "r-unknown", "r-ok", "r-other"]
    response = await client.post(fill(f"{BASE}/devices/status/", tenant), json=body)
    assert response.status_code == 200
    assert response.json() == [
        {"Status": "Failed", "FailureReason": "DryRunSendingFailed"},
        {"Status": "Pending", "FailureReason": None},
        {"Status": "Success", "FailureReason": None},
        # Another account's registration reads as one never seen.
        {"Status": "Pending", "FailureReason": None},
    ]
    seed_form = await client.post(
        fill(f"{BASE}/devices/status/", tenant),
        content=fill(STATUS, tenant, **{"%REG_REQUEST_ID%": "r-ok"}),
    )
    assert seed_form.json() == [{"Status": "Success", "FailureReason": None}]


async def test_status_with_an_invalid_api_token_is_400(
    client: httpx.AsyncClient, tenants: TenantFactory
) -> None:
    tenant = await tenants.make()
    body = fill(STATUS, tenant, **{"%REG_REQUEST_ID%": "r-1"}).replace(tenant.api_key, "nope")
    response = await client.post(fill(f"{BASE}/devices/status", tenant), content=body)
    assert response.status_code == 400
    assert response.json()["errors"] == {"ApiToken": ["ApiTokenNotValid"]}


@pytest.mark.parametrize("path", ["/devices/cleanup", "/devices/cleanup/batch"])
async def test_seed_cleanup_publishes_a_cleanup_command(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory, path: str
) -> None:
    tenant = await tenants.make()
    response = await client.post(fill(BASE + path, tenant), content=fill(CLEANUP, tenant))
    assert response.status_code == 202
    assert response.content == b""
    [(key, command)] = await tap.drain(tenant.app.id)
    assert isinstance(command, CleanupDevices)
    assert (command.contact_id, command.token) == (USER, FCM_TOKEN)
    assert key == device_key(tenant.app.id, hash_token(FCM_TOKEN))


async def test_cleanup_batch_takes_an_array_and_a_contact_without_token(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory
) -> None:
    tenant = await tenants.make()
    item = json.loads(fill(CLEANUP, tenant))
    del item["DeviceToken"]
    response = await client.post(
        fill(f"{BASE}/devices/cleanup/batch", tenant), json=[item, {**item, "UserId": "u2"}]
    )
    assert response.status_code == 202
    published = await tap.drain(tenant.app.id)
    assert sorted((c.contact_id, c.token) for _, c in published) == [(USER, None), ("u2", None)]


@pytest.mark.parametrize("wrong", ["token", "org"])
async def test_an_invalid_api_token_is_accepted_but_leaves_no_trace(
    client: httpx.AsyncClient,
    tap: Tap,
    tenants: TenantFactory,
    db: AsyncDatabase[Document],
    wrong: str,
) -> None:
    tenant = await tenants.make()
    other = await tenants.make()
    body = fill(SINGLE_ANDROID, tenant)
    path = fill(f"{BASE}/devices", tenant)
    if wrong == "token":
        body = body.replace(tenant.api_key, "pl_not-a-key")
    else:  # a real key, of another org
        path = fill(f"{BASE}/devices", other)
    response = await client.post(path, content=body, headers={"x-ms-track-registration": "true"})
    assert response.status_code == 202
    assert "RegistrationRequestId" in response.json()
    assert await tap.drain(tenant.app.id) == []
    assert await db["registrations"].count_documents({}) == 0


def _item(tenant: Tenant, **changes: object) -> dict[str, object]:
    item: dict[str, object] = json.loads(fill(SINGLE_ANDROID, tenant))
    item.update(changes)
    return {k: v for k, v in item.items() if v is not None}


@pytest.mark.parametrize(
    ("case", "errors"),
    [
        ("missing app", {"MobileAppId": ["is required"]}),
        ("blank user", {"UserId": ["must not be blank"]}),
        ("no token", {"$": ["give exactly one of ApnsDeviceToken and FcmDeviceToken"]}),
        ("two tokens", {"$": ["give exactly one of ApnsDeviceToken and FcmDeviceToken"]}),
        (
            "long token",
            {
                "FcmDeviceToken": [
                    "DeviceTokenTooLong: the token is too long (at most 4096 characters)"
                ]
            },
        ),
        ("number token", {"FcmDeviceToken": ["must be a string"]}),
        ("malformed", {"$": ["the body is not valid JSON"]}),
        ("array", {"$": ["the body must be a JSON object"]}),
        ("unknown app", {"MobileAppId": ["no such mobile app in this org"]}),
        ("bad callback headers", {"x-ms-callback-url-headers": ["is not valid JSON"]}),
        ("bad callback url", {"x-ms-callback-url": ["must be an http(s) URL"]}),
    ],
)
async def test_bad_single_registration_is_400_and_publishes_nothing(
    client: httpx.AsyncClient,
    tap: Tap,
    tenants: TenantFactory,
    db: AsyncDatabase[Document],
    case: str,
    errors: dict[str, list[str]],
) -> None:
    tenant = await tenants.make()
    headers = {"x-ms-track-registration": "true"}
    bodies: dict[str, object] = {
        "missing app": _item(tenant, MobileAppId=None),
        "blank user": _item(tenant, UserId=" "),
        "no token": _item(tenant, FcmDeviceToken=None),
        "two tokens": _item(tenant, ApnsDeviceToken=APNS_TOKEN),
        "long token": _item(tenant, FcmDeviceToken="x" * 4097),
        "number token": _item(tenant, FcmDeviceToken=123),
        "array": [_item(tenant)],
        "unknown app": _item(tenant, MobileAppId="no-such-app"),
    }
    content = "{ not json" if case == "malformed" else json.dumps(bodies.get(case, _item(tenant)))
    if case == "bad callback headers":
        headers |= {"x-ms-callback-url": "https://h.example.com", "x-ms-callback-url-headers": "{"}
    if case == "bad callback url":
        headers |= {"x-ms-callback-url": "ftp://h.example.com"}
    response = await client.post(fill(f"{BASE}/devices", tenant), content=content, headers=headers)
    assert response.status_code == 400
    assert response.json() == {
        "type": "https://tools.ietf.org/html/rfc9110#section-15.5.1",
        "title": "One or more validation errors occurred.",
        "status": 400,
        "errors": errors,
    }
    assert await tap.drain(tenant.app.id) == []
    assert await db["registrations"].count_documents({}) == 0
    assert await db["devices"].count_documents({}) == 0


@pytest.mark.parametrize(
    ("count", "errors"),
    [(101, {"$": ["must have at most 100 items"]}), (0, {"$": ["must have at least 1 item(s)"]})],
)
async def test_batch_size_is_1_to_100(
    client: httpx.AsyncClient,
    tap: Tap,
    tenants: TenantFactory,
    count: int,
    errors: dict[str, list[str]],
) -> None:
    tenant = await tenants.make()
    response = await client.post(
        fill(f"{BASE}/devices/batch", tenant), json=[_item(tenant)] * count
    )
    assert response.status_code == 400
    assert response.json()["errors"] == errors
    assert await tap.drain(tenant.app.id) == []


async def test_one_bad_batch_item_rejects_the_whole_batch(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory
) -> None:
    tenant = await tenants.make()
    items = [_item(tenant)] * 99 + [_item(tenant, UserId=None)]
    full = await client.post(fill(f"{BASE}/devices/batch", tenant), json=[_item(tenant)] * 100)
    assert full.status_code == 202
    assert len(await tap.drain(tenant.app.id)) == 100
    response = await client.post(fill(f"{BASE}/devices/batch", tenant), json=items)
    assert response.status_code == 400
    assert response.json()["errors"] == {"[99].UserId": ["is required"]}
    assert await tap.drain(tenant.app.id) == []


async def test_a_batch_drops_only_the_items_with_an_invalid_api_token(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory
) -> None:
    tenant = await tenants.make()
    items = [
        _item(tenant, UserId="kept-1"),
        _item(tenant, UserId="dropped", ApiToken="pl_wrong"),
        _item(tenant, UserId="kept-2"),
    ]
    response = await client.post(
        fill(f"{BASE}/devices/batch", tenant),
        json=items,
        headers={"x-ms-track-registration": "true"},
    )
    assert response.status_code == 202
    ids = [item["RegistrationRequestId"] for item in response.json()]
    assert len(ids) == 3
    published = [c for _, c in await tap.drain(tenant.app.id)]
    assert [(c.request_id, c.contact_id) for c in published] == [
        (ids[0], "kept-1"),
        (ids[2], "kept-2"),
    ]


LONG_URL = "https://hooks.example.com/" + "a" * 2030


@pytest.mark.parametrize(
    ("callback", "errors"),
    [
        (
            {"x-ms-callback-url-headers": json.dumps({"X Auth": "hook-secret"})},
            {
                "x-ms-callback-url-headers": [
                    "'X Auth' is not an HTTP header name (letters, digits, !#$%&'*+-.^_`|~)"
                ]
            },
        ),
        (
            {"x-ms-callback-url-headers": json.dumps({"X-Auth": "a\r\nX-Injected: 1"})},
            {
                "x-ms-callback-url-headers": [
                    "the value of 'X-Auth' must be printable ASCII, without line breaks"
                ]
            },
        ),
        (
            {"x-ms-callback-url-headers": json.dumps({"X-Auth": "caf\u00e9", "": "v"})},
            {
                "x-ms-callback-url-headers": [
                    "the value of 'X-Auth' must be printable ASCII, without line breaks",
                    "'' is not an HTTP header name (letters, digits, !#$%&'*+-.^_`|~)",
                ]
            },
        ),
        (
            {"x-ms-callback-url": LONG_URL},
            {"x-ms-callback-url": ["is too long: 2056 characters, at most 2048"]},
        ),
        (
            {"x-ms-callback-url": "https:///no-host"},
            {"x-ms-callback-url": ["must be an http(s) URL"]},
        ),
    ],
)
async def test_a_callback_that_could_not_be_delivered_is_400_and_publishes_nothing(
    client: httpx.AsyncClient,
    tap: Tap,
    tenants: TenantFactory,
    callback: dict[str, str],
    errors: dict[str, list[str]],
) -> None:
    tenant = await tenants.make()
    headers = {"x-ms-track-registration": "true", "x-ms-callback-url": "https://h.example.com"}
    response = await client.post(
        fill(f"{BASE}/devices", tenant), json=_item(tenant), headers=headers | callback
    )
    assert response.status_code == 400
    assert response.json() == {
        "type": "https://tools.ietf.org/html/rfc9110#section-15.5.1",
        "title": "One or more validation errors occurred.",
        "status": 400,
        "errors": errors,
    }
    assert await tap.drain(tenant.app.id) == []


async def test_a_callback_url_scheme_may_be_upper_case_and_headers_keep_their_inner_spaces(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory
) -> None:
    tenant = await tenants.make()
    url = "HTTP://Hooks.Example.com/push/status"
    response = await client.post(
        fill(f"{BASE}/devices", tenant),
        json=_item(tenant),
        headers={
            "x-ms-callback-url": url,
            "x-ms-callback-url-headers": json.dumps({"X-Auth": " Bearer a b\tc "}),
        },
    )
    assert response.status_code == 202
    [(_, command)] = await tap.drain(tenant.app.id)
    assert isinstance(command, RegisterDevice)
    assert command.callback is not None
    assert command.callback.url == url
    assert command.callback.headers == {"X-Auth": "Bearer a b\tc"}
    assert command.callback.signature == signed(tenant.api_key, url)
