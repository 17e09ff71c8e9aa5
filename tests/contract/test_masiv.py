"""Seed 002 (Masiv): the association example verbatim, with this test's API key."""

from __future__ import annotations

import json
from datetime import datetime

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core.events import RegisterDevice
from services.core.store.apps import NewApp
from services.core.store.client import Document
from services.core.tokens import hash_token
from services.core.topics import device_key
from tests.contract.conftest import TenantFactory, fcm_credentials
from tests.registrations import Tap

pytestmark = pytest.mark.integration

PATH = "/v1/association/create"
SEED_BODY = """{
"appId": "com.empresa.miapp",
"token": "asdfdgwregjirgjirjh435ggyfggghhtg9i45rj9tu4j943ujto94jhtiorgtty",
"association": {
"cellphone": "573141234567",
"email": "usuario@empresa.com"
}
}"""
SEED_TOKEN = "asdfdgwregjirgjirjh435ggyfggghhtg9i45rj9tu4j943ujto94jhtiorgtty"


def auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}


async def test_seed_example_associates_and_publishes(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory
) -> None:
    tenant = await tenants.make(package_names=["com.empresa.miapp"])
    response = await client.post(PATH, content=SEED_BODY, headers=auth(tenant.api_key))
    assert response.status_code == 200
    assert response.json() == {"status": "OK", "data": "Successful association", "error": None}
    [(key, command)] = await tap.drain(tenant.app.id)
    assert key == device_key(tenant.app.id, hash_token(SEED_TOKEN))
    assert isinstance(command, RegisterDevice)
    assert command.source == "masiv"
    assert (command.token, command.platform) == (SEED_TOKEN, "android")
    assert (command.cellphone, command.email) == ("573141234567", "usuario@empresa.com")
    assert command.account_id == tenant.account_id


async def test_app_id_may_be_left_out_when_the_account_has_one_app(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory
) -> None:
    tenant = await tenants.make()
    body = {"token": "b" * 64, "association": {"email": "Ana@Example.COM"}, "deviceType": "iOS"}
    response = await client.post(PATH, json=body, headers=auth(tenant.api_key))
    assert response.status_code == 200
    [(_, command)] = await tap.drain(tenant.app.id)
    assert isinstance(command, RegisterDevice)
    assert (command.platform, command.email, command.cellphone) == (
        "ios",
        "ana@example.com",
        None,
    )


async def test_app_id_is_needed_when_the_account_has_several_apps(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory
) -> None:
    tenant = await tenants.make()
    await tenants.apps.create(
        NewApp(account_id=tenant.account_id, name="Second", fcm=fcm_credentials())
    )
    body = {"token": "tok", "association": {"cellphone": "+573141234567"}}
    response = await client.post(PATH, json=body, headers=auth(tenant.api_key))
    assert response.status_code == 400
    assert response.json()["message"] == "appId is required: the account has more than one app"
    assert await tap.drain(tenant.app.id) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"appId": "com.empresa.miapp", "token": "t"}, "association: is required"),
        (
            {"appId": "com.empresa.miapp", "token": "t", "association": {}},
            "association: association needs a cellphone, an email or both",
        ),
        (
            {"appId": "com.empresa.miapp", "token": "t", "association": {"cellphone": "31-41"}},
            "association.cellphone: cellphone must be the country code and number, 8 to 15 digits",
        ),
        (
            {"appId": "com.empresa.miapp", "token": "t", "association": {"email": "usuario@"}},
            "association.email: email is not a valid address",
        ),
        ({"appId": "com.empresa.miapp", "association": {"email": "a@b.co"}}, "token: is required"),
        (
            {"appId": "com.empresa.miapp", "token": " ", "association": {"email": "a@b.co"}},
            "token: must not be blank",
        ),
        (
            {"appId": "com.empresa.miapp", "token": "t" * 4097, "association": {"email": "a@b.co"}},
            "token: is too long (at most 4096 characters)",
        ),
        (
            {"appId": "com.empresa.miapp", "token": 5, "association": {"email": "a@b.co"}},
            "token: must be a string",
        ),
        (
            {"appId": "com.otra.app", "token": "t", "association": {"email": "a@b.co"}},
            "appId com.otra.app matches no app of the account",
        ),
        ('{"appId": ', "the body is not valid JSON"),
    ],
)
async def test_bad_input_is_400_in_the_seed_shape_and_publishes_nothing(
    client: httpx.AsyncClient,
    tap: Tap,
    tenants: TenantFactory,
    db: AsyncDatabase[Document],
    body: object,
    message: str,
) -> None:
    tenant = await tenants.make(package_names=["com.empresa.miapp"])
    content = body if isinstance(body, str) else json.dumps(body)
    response = await client.post(PATH, content=content, headers=auth(tenant.api_key))
    assert response.status_code == 400
    answer = response.json()
    datetime.fromisoformat(answer.pop("timestamp"))
    assert answer == {"status": 400, "error": "Bad Request", "message": message, "path": PATH}
    assert await tap.drain(tenant.app.id) == []
    assert await db["devices"].count_documents({}) == 0


async def test_a_missing_key_is_401(client: httpx.AsyncClient, tenants: TenantFactory) -> None:
    await tenants.make(package_names=["com.empresa.miapp"])
    response = await client.post(PATH, content=SEED_BODY)
    assert response.status_code == 401
    assert response.json()["error"] == "Unauthorized"
