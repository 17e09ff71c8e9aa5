"""The admin API: accounts, API keys, apps; secrets go in sealed and never come out."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr
from pymongo.asynchronous.database import AsyncDatabase

from services.core.credentials import APNSCredentials, FCMCredentials, WebPushCredentials
from services.core.secrets import Vault
from services.core.settings import Settings
from services.core.store.apps import Apps
from services.core.store.client import Document
from services.ingest.app import create_admin_app
from tests.contract.conftest import ADMIN_TOKEN, MASTER_KEY, apns_key, serving

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def app_body(account_id: str, **more: object) -> dict[str, object]:
    return {
        "account_id": account_id,
        "id": "66447faae76e4b00011d9cef",
        "name": "Mi App",
        "package_names": ["com.empresa.miapp"],
        "settings": {"send_to": "latest", "verify_on_register": True},
        "fcm": {
            "service_account": {
                "type": "service_account",
                "project_id": "mi-proyecto",
                "private_key": "FCM-PRIVATE-KEY-SECRET",
                "client_email": "push@mi-proyecto.iam.gserviceaccount.com",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        },
        "apns": {
            "team_id": "ABCDE12345",
            "key_id": "KEY1234567",
            "topic": "com.empresa.miapp",
            "private_key": apns_key(),
            "sandbox": True,
        },
        "webpush": {
            "vapid_private_key": "VAPID-PRIVATE-SECRET",
            "vapid_public_key": "BPublicKey",
            "subject": "mailto:ops@empresa.com",
        },
        "sandbox": True,
        **more,
    }


async def new_account(admin: httpx.AsyncClient, **body: str) -> dict[str, str]:
    response = await admin.post(
        "/admin/v1/accounts", json={"name": "Empresa", **body}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    answer: dict[str, str] = response.json()
    return answer


async def test_account_and_keys(admin: httpx.AsyncClient, db: AsyncDatabase[Document]) -> None:
    account = await new_account(admin, id="acme")
    assert account["id"] == "acme"
    assert account["name"] == "Empresa"
    assert account["api_key"].startswith("pl_")
    assert account["api_key"].startswith("pl_sk_")
    stored = await db["api_keys"].find_one({"account_id": "acme"})
    assert stored is not None
    assert stored["hash"] == hashlib.sha256(account["api_key"].encode()).hexdigest()
    assert stored["kind"] == "secret"
    assert account["api_key"] not in str(stored)
    again = await admin.post("/admin/v1/accounts", json={"name": "X", "id": "acme"}, headers=ADMIN)
    assert again.status_code == 409
    issued = await admin.post("/admin/v1/accounts/acme/api-keys", headers=ADMIN)
    assert issued.status_code == 201
    second = issued.json()["api_key"]
    assert second != account["api_key"]
    for key in (account["api_key"], second):
        # A known key gets past authentication: the app is what is missing.
        answer = await admin.post(
            "/v1/apps/none/devices", json={}, headers={"Authorization": f"Bearer {key}"}
        )
        assert answer.status_code == 404
    missing = await admin.post("/admin/v1/accounts/nobody/api-keys", headers=ADMIN)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


async def test_app_secrets_are_sealed_and_never_returned(
    admin: httpx.AsyncClient, db: AsyncDatabase[Document]
) -> None:
    account = await new_account(admin)
    body = app_body(account["id"])
    created = await admin.post("/admin/v1/apps", json=body, headers=ADMIN)
    assert created.status_code == 201, created.text
    app = created.json()
    assert app["id"] == "66447faae76e4b00011d9cef"
    assert app["account_id"] == account["id"]
    assert app["settings"] == {"send_to": "latest", "verify_on_register": True}
    assert app["sandbox"] is True
    assert app["providers"] == {
        "fcm": {"project_id": "mi-proyecto"},
        "apns": {
            "team_id": "ABCDE12345",
            "key_id": "KEY1234567",
            "topic": "com.empresa.miapp",
            "sandbox": True,
        },
        "webpush": {"vapid_public_key": "BPublicKey", "subject": "mailto:ops@empresa.com"},
    }
    fetched = await admin.get(f"/admin/v1/apps/{app['id']}", headers=ADMIN)
    assert fetched.json() == app
    apns = body["apns"]
    assert isinstance(apns, dict)
    secrets = ["FCM-PRIVATE-KEY-SECRET", "VAPID-PRIVATE-SECRET", apns["private_key"]]
    raw = await db["apps"].find_one({"_id": app["id"]})
    for text in (created.text, fetched.text, str(raw)):
        for secret in secrets:
            assert secret not in text
    assert raw is not None
    assert set(raw["credentials"]) == {"fcm", "apns", "webpush"}
    # What the sender gets back is exactly what the admin API took.
    apps = Apps(db, Vault(SecretStr(MASTER_KEY)))
    assert await apps.credentials(app["id"], "fcm") == FCMCredentials.model_validate(body["fcm"])
    assert await apps.credentials(app["id"], "apns") == APNSCredentials.model_validate(apns)
    webpush = await apps.credentials(app["id"], "webpush")
    assert webpush == WebPushCredentials.model_validate(body["webpush"])
    assert "VAPID-PRIVATE-SECRET" not in repr(webpush)


async def test_update_app(admin: httpx.AsyncClient, db: AsyncDatabase[Document]) -> None:
    account = await new_account(admin)
    created = (
        await admin.post("/admin/v1/apps", json=app_body(account["id"]), headers=ADMIN)
    ).json()
    changes = {
        "name": "Renamed",
        "sandbox": False,
        "settings": {"verify_on_register": False},
        "webpush": None,
        "apns": {
            "team_id": "ZZZZZ99999",
            "key_id": "KEY7654321",
            "topic": "com.x",
            "private_key": apns_key(),
            "sandbox": False,
        },
    }
    response = await admin.patch(f"/admin/v1/apps/{created['id']}", json=changes, headers=ADMIN)
    assert response.status_code == 200, response.text
    app = response.json()
    assert app["name"] == "Renamed"
    assert app["settings"] == {"send_to": "latest", "verify_on_register": False}
    assert app["package_names"] == ["com.empresa.miapp"]
    assert set(app["providers"]) == {"fcm", "apns", "webpush"}
    assert app["providers"]["webpush"] is None
    assert app["providers"]["apns"]["team_id"] == "ZZZZZ99999"
    assert app["sandbox"] is False
    assert app["updated"] > created["updated"]
    raw = await db["apps"].find_one({"_id": created["id"]})
    assert raw is not None
    assert set(raw["credentials"]) == {"fcm", "apns"}
    apps = Apps(db, Vault(SecretStr(MASTER_KEY)))
    assert await apps.credentials(created["id"], "webpush") is None
    assert (await apps.credentials(created["id"], "apns")) is not None
    missing = await admin.patch("/admin/v1/apps/nope", json={"name": "x"}, headers=ADMIN)
    assert missing.status_code == 404
    moved = await admin.patch(
        f"/admin/v1/apps/{created['id']}", json={"account_id": "other"}, headers=ADMIN
    )
    assert moved.status_code == 400
    assert moved.json()["errors"] == [{"field": "account_id", "message": "is not a known field"}]


async def test_package_names_name_one_app_per_account(admin: httpx.AsyncClient) -> None:
    account = await new_account(admin)
    first = await admin.post("/admin/v1/apps", json=app_body(account["id"]), headers=ADMIN)
    assert first.status_code == 201
    clash = app_body(account["id"], id="second")
    response = await admin.post("/admin/v1/apps", json=clash, headers=ADMIN)
    assert response.status_code == 409
    assert "com.empresa.miapp" in response.json()["detail"]
    other_account = await new_account(admin)
    elsewhere = await admin.post(
        "/admin/v1/apps", json=app_body(other_account["id"], id="third"), headers=ADMIN
    )
    assert elsewhere.status_code == 201


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            {
                "apns": {
                    "team_id": "ABCDE12345",
                    "key_id": "KEY1234567",
                    "topic": "t",
                    "private_key": "not a key",
                }
            },
            "apns.private_key",
        ),
        ({"fcm": {"service_account": {"project_id": "p"}}}, "fcm.service_account"),
        ({"settings": {"send_to": "some"}}, "settings.send_to"),
        (
            {"webpush": {"vapid_private_key": "k", "vapid_public_key": "p", "subject": "ops"}},
            "webpush.subject",
        ),
        ({"id": "has space"}, "id"),
        ({"unknown": 1}, "unknown"),
        ({"account_id": "nobody"}, "account_id"),
    ],
)
async def test_bad_app_bodies_are_400(
    admin: httpx.AsyncClient, db: AsyncDatabase[Document], change: dict[str, object], field: str
) -> None:
    account = await new_account(admin)
    body = {**app_body(account["id"]), **change}
    response = await admin.post("/admin/v1/apps", json=body, headers=ADMIN)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in response.json()["errors"]]
    assert await db["apps"].count_documents({}) == 0


async def test_admin_token_is_required(admin: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN_TOKEN}):
        response = await admin.post("/admin/v1/accounts", json={"name": "x"}, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"


async def _client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(create_admin_app(settings), "http://admin") as http:
        yield http


async def test_without_an_admin_token_the_admin_api_does_not_exist(settings: Settings) -> None:
    async for http in _client(settings):
        response = await http.post("/admin/v1/accounts", json={"name": "x"}, headers=ADMIN)
        assert response.status_code == 404


async def test_without_a_master_key_credentials_are_refused_clearly(
    settings: Settings, db: AsyncDatabase[Document]
) -> None:
    no_key = settings.model_copy(update={"admin_token": SecretStr(ADMIN_TOKEN)})
    async for http in _client(no_key):
        account = await new_account(http)
        response = await http.post("/admin/v1/apps", json=app_body(account["id"]), headers=ADMIN)
        assert response.status_code == 500
        assert "PUSHLINE_MASTER_KEY is not set" in response.json()["detail"]
        assert await db["apps"].count_documents({}) == 0
        bare = {"account_id": account["id"], "name": "No providers"}
        created = await http.post("/admin/v1/apps", content=json.dumps(bare), headers=ADMIN)
        assert created.status_code == 201
        assert created.json()["providers"] == {"fcm": None, "apns": None, "webpush": None}


async def test_the_public_listener_never_serves_the_admin_api(
    client: httpx.AsyncClient, db: AsyncDatabase[Document]
) -> None:
    # With the admin token set, and presented: the admin API is the admin listener's alone.
    for method, path in [
        ("POST", "/admin/v1/accounts"),
        ("POST", "/admin/v1/accounts/acme/api-keys"),
        ("GET", "/admin/v1/accounts/acme/api-keys"),
        ("POST", "/admin/v1/accounts/acme/api-keys/key_1/revoke"),
        ("POST", "/admin/v1/accounts/acme/api-keys/key_1/rotate"),
        ("POST", "/admin/v1/apps"),
        ("GET", "/admin/v1/apps/any"),
        ("PATCH", "/admin/v1/apps/any"),
    ]:
        response = await client.request(method, path, json={"name": "x"}, headers=ADMIN)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["detail"] == f"no route matches {path}"
    assert await db["accounts"].count_documents({}) == 0
    assert not [p for p in (await client.get("/openapi.json")).json()["paths"] if "admin" in p]


async def test_the_admin_listener_serves_the_admin_api_and_its_own_health(
    admin: httpx.AsyncClient,
) -> None:
    account = await new_account(admin)
    assert account["api_key"]
    health = await admin.get("/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    document = (await admin.get("/openapi.json")).json()
    assert document["info"]["title"] == "Pushline admin"
    # The public API is not served here.
    public = await admin.post("/v1/notifications", json={}, headers=ADMIN)
    assert public.status_code == 404
