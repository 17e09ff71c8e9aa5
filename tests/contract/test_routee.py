"""Seed 000 (Routee): the seed's own curl bodies, with this test's ids and keys."""

from __future__ import annotations

import json

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core.events import RegisterDevice
from services.core.store.client import Document
from services.core.tokens import hash_token
from services.core.topics import device_key
from tests.contract.conftest import SUBSCRIPTION_KEYS, TenantFactory
from tests.registrations import Tap

pytestmark = pytest.mark.integration

# Seed 000, request bodies of the three curl examples (device type, body).
SEED_BODIES = {
    "android": """{
"routeeContactId": "test1",
"token": "AndroidToken",
"implementationId":"66447faae76e4b00011d9cef"
}""",
    "web": """{
"routeeContactId": "test1",
"token": "WebToken",
"implementationId":"66447faae76e4b00011d9cef"
}""",
    "ios": """{
"routeeContactId": "test1",
"token": "IosToken",
"implementationId":"66447faae76e4b00011d9cef"
}""",
}


def seed_body(device_type: str, implementation_id: str) -> str:
    return SEED_BODIES[device_type].replace("66447faae76e4b00011d9cef", implementation_id)


def headers(api_key: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}


@pytest.mark.parametrize("device_type", ["android", "web", "ios"])
async def test_seed_example_maps_the_token_and_publishes_it(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory, device_type: str
) -> None:
    tenant = await tenants.make()
    body = seed_body(device_type, tenant.app.id)
    response = await client.post(
        f"/messages/{device_type}", content=body, headers=headers(tenant.api_key)
    )
    assert response.status_code == 200
    assert response.json() == {"routeeContactId": "test1"}
    token = json.loads(body)["token"]
    [(key, command)] = await tap.drain(tenant.app.id)
    assert key == device_key(tenant.app.id, hash_token(token))
    assert isinstance(command, RegisterDevice)
    assert command.source == "routee"
    assert (command.platform, command.token, command.contact_id) == (device_type, token, "test1")
    assert command.account_id == tenant.account_id


async def test_device_type_is_matched_in_any_case(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory
) -> None:
    tenant = await tenants.make()
    response = await client.post(
        "/messages/ANDROID",
        content=seed_body("android", tenant.app.id),
        headers=headers(tenant.api_key),
    )
    assert response.status_code == 200
    [(_, command)] = await tap.drain(tenant.app.id)
    assert isinstance(command, RegisterDevice)
    assert command.platform == "android"


async def test_an_unknown_implementation_is_routee_details_not_found(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory
) -> None:
    tenant = await tenants.make()
    response = await client.post(
        "/messages/android",
        content=seed_body("android", "66447faae76e4b00011d9cef"),
        headers=headers(tenant.api_key),
    )
    assert response.status_code == 400
    assert response.json()["routeeContactId"] == "Routee Details not Found"
    assert response.json()["error"] == "error occured"
    assert await tap.drain("66447faae76e4b00011d9cef") == []


async def test_an_app_without_the_device_types_provider_is_device_config_not_found(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory
) -> None:
    tenant = await tenants.make(providers={})
    response = await client.post(
        "/messages/ios", content=seed_body("ios", tenant.app.id), headers=headers(tenant.api_key)
    )
    assert response.status_code == 400
    assert response.json()["routeeContactId"] == "Device Config not found"
    assert await tap.drain(tenant.app.id) == []


@pytest.mark.parametrize(
    ("body", "message", "detail"),
    [
        (
            {"token": "t", "implementationId": "APP"},
            "Error in getting routee Contact",
            "routeeContactId: is required",
        ),
        (
            {"routeeContactId": "  ", "token": "t", "implementationId": "APP"},
            "Error in getting routee Contact",
            "routeeContactId: must not be blank",
        ),
        (
            {"routeeContactId": "c", "token": "", "implementationId": "APP"},
            "Device Config not found",
            "token: must not be blank",
        ),
        (
            {"routeeContactId": "c", "token": "x" * 4097, "implementationId": "APP"},
            "Device Config not found",
            "token: is too long (at most 4096 characters)",
        ),
        (
            {"routeeContactId": "c", "token": 12345678, "implementationId": "APP"},
            "Device Config not found",
            "token: must be a string",
        ),
        (
            {"routeeContactId": "c", "token": "t", "implementationId": ""},
            "Routee Details not Found",
            "implementationId: must not be blank",
        ),
        ("not json {", "Routee Details not Found", "the body is not valid JSON"),
        ([], "Routee Details not Found", "the body must be a JSON object"),
    ],
)
async def test_bad_input_is_400_and_publishes_nothing(
    client: httpx.AsyncClient,
    tap: Tap,
    tenants: TenantFactory,
    db: AsyncDatabase[Document],
    body: object,
    message: str,
    detail: str,
) -> None:
    tenant = await tenants.make()
    content = body if isinstance(body, str) else json.dumps(body).replace("APP", tenant.app.id)
    response = await client.post(
        "/messages/android", content=content, headers=headers(tenant.api_key)
    )
    assert response.status_code == 400
    assert response.json() == {
        "routeeContactId": message,
        "error": "error occured",
        "details": [detail],
    }
    assert await tap.drain(tenant.app.id) == []
    assert await db["devices"].count_documents({}) == 0
    assert await db["registrations"].count_documents({}) == 0


async def test_a_missing_or_unknown_key_is_401(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory
) -> None:
    tenant = await tenants.make()
    body = seed_body("android", tenant.app.id)
    for auth in ({}, {"Authorization": "Bearer pl_nope"}, {"Authorization": tenant.api_key}):
        response = await client.post("/messages/android", content=body, headers=auth)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
    assert await tap.drain(tenant.app.id) == []


async def test_a_web_token_holding_a_push_subscription_goes_to_web_push(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory
) -> None:
    tenant = await tenants.make()
    subscription = {
        "endpoint": "https://push.example.net/send/xyz",
        "keys": SUBSCRIPTION_KEYS,
    }
    body = {
        "routeeContactId": "test1",
        "token": json.dumps(subscription),
        "implementationId": tenant.app.id,
    }
    response = await client.post("/messages/web", json=body, headers=headers(tenant.api_key))
    assert response.status_code == 200
    [(key, command)] = await tap.drain(tenant.app.id)
    assert isinstance(command, RegisterDevice)
    assert command.token == subscription["endpoint"]
    assert command.subscription is not None
    assert command.subscription.endpoint == subscription["endpoint"]
    assert key == device_key(tenant.app.id, hash_token(str(subscription["endpoint"])))


async def test_the_seeds_request_sample_with_typographic_quotes_works_as_copied(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory
) -> None:
    tenant = await tenants.make()
    sample = """{
"routeeContactId": "64be7af142fe590001a22923",
"token": \u201c12345678\u201d,
"implementationId":"66447faae76e4b00011d9cef"
}""".replace("66447faae76e4b00011d9cef", tenant.app.id)
    response = await client.post(
        "/messages/ios", content=sample.encode(), headers=headers(tenant.api_key)
    )
    assert response.status_code == 200
    assert response.json() == {"routeeContactId": "64be7af142fe590001a22923"}
    [(_, command)] = await tap.drain(tenant.app.id)
    assert isinstance(command, RegisterDevice)
    assert (command.token, command.platform) == ("12345678", "ios")
    # Other malformed bodies stay malformed.
    broken = await client.post(
        "/messages/ios", content=sample.encode()[:-1], headers=headers(tenant.api_key)
    )
    assert broken.status_code == 400
    assert broken.json()["details"] == ["the body is not valid JSON"]
