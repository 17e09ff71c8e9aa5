"""The admin API checks credentials as they are uploaded and shows the verdict: the app's
`credentials_status`, per provider, in every answer and in `GET /admin/v1/apps/{id}`.
FCM is the FCM emulator (Google's OAuth and FCM v1, in a thread); Web Push needs no
server (its check is the VAPID pair)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.core.providers.fcm import FCMSettings
from services.core.settings import Settings
from services.ingest.app import create_admin_app
from services.sandbox.emulators import EmulatorThread, FCMEmulator
from services.sandbox.emulators.keys import pkcs8_pem
from tests.contract.conftest import ADMIN_TOKEN, serving
from tests.unit.providers.keys import vapid_pair

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def fcm() -> Iterator[FCMEmulator]:
    emulator = FCMEmulator()
    with EmulatorThread(emulator):
        yield emulator


@pytest.fixture
async def admin(ingest_settings: Settings, fcm: FCMEmulator) -> AsyncIterator[httpx.AsyncClient]:
    """The admin app, with FCM's endpoint at the emulator (as PUSHLINE_FCM_ENDPOINT would)."""
    settings = ingest_settings.model_copy(
        update={"provider_settings": {"fcm": FCMSettings(endpoint=fcm.url)}}
    )
    async with serving(create_admin_app(settings), "http://admin") as http:
        yield http


def webpush(matching: bool) -> dict[str, str]:
    one, other = vapid_pair(), vapid_pair()
    return {
        "vapid_private_key": one.private,
        "vapid_public_key": (one if matching else other).public,
        "subject": "mailto:ops@empresa.com",
    }


def foreign_service_account(fcm: FCMEmulator) -> dict[str, str]:
    """The emulator's service account with a key Google never issued for it."""
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {**fcm.service_account(), "private_key": pkcs8_pem(other)}


async def new_account(admin: httpx.AsyncClient) -> str:
    created = await admin.post("/admin/v1/accounts", json={"name": "Empresa"}, headers=ADMIN)
    assert created.status_code == 201, created.text
    account_id: str = created.json()["id"]
    return account_id


async def fetched(admin: httpx.AsyncClient, app_id: str) -> dict[str, Any]:
    answer = await admin.get(f"/admin/v1/apps/{app_id}", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    app: dict[str, Any] = answer.json()
    return app


async def test_good_and_bad_credentials_are_shown_as_checked_at_upload(
    admin: httpx.AsyncClient, fcm: FCMEmulator
) -> None:
    account_id = await new_account(admin)
    body = {
        "account_id": account_id,
        "name": "Mi App",
        "fcm": {"service_account": fcm.service_account()},
        "webpush": webpush(matching=False),
    }
    created = await admin.post("/admin/v1/apps", json=body, headers=ADMIN)
    assert created.status_code == 201, created.text
    app = created.json()
    status = app["credentials_status"]
    assert set(status) == {"fcm", "webpush"}
    assert (status["fcm"]["valid"], status["fcm"]["last_error"]) == (True, None)
    assert status["webpush"]["valid"] is False
    assert status["webpush"]["last_error"] == (
        "VapidKeyMismatch: the VAPID public key does not belong to the private key"
    )
    for each in status.values():
        datetime.fromisoformat(each["checked_at"])
    assert (await fetched(admin, app["id"]))["credentials_status"] == status
    # FCM was asked: an OAuth token, then a dry run that reaches no device.
    [record] = fcm.controls.records()
    assert (record.status, record.payload["validate_only"]) == (200, True)

    # A service account whose key Google refuses, and a matching VAPID pair.
    changes = {"fcm": {"service_account": foreign_service_account(fcm)}, "webpush": webpush(True)}
    changed = await admin.patch(f"/admin/v1/apps/{app['id']}", json=changes, headers=ADMIN)
    assert changed.status_code == 200, changed.text
    status = (await fetched(admin, app["id"]))["credentials_status"]
    assert changed.json()["credentials_status"] == status
    assert status["fcm"]["valid"] is False
    assert status["fcm"]["last_error"].startswith("TokenRefresh: ")
    assert "invalid_grant" in status["fcm"]["last_error"]
    assert "PRIVATE KEY" not in str(status)
    assert (status["webpush"]["valid"], status["webpush"]["last_error"]) == (True, None)
    assert len(fcm.controls.records()) == 1  # refused at the token endpoint

    # A provider removed takes its status along; the other keeps its own.
    removed = await admin.patch(f"/admin/v1/apps/{app['id']}", json={"fcm": None}, headers=ADMIN)
    assert set(removed.json()["credentials_status"]) == {"webpush"}
    assert (await fetched(admin, app["id"]))["credentials_status"] == {"webpush": status["webpush"]}


async def test_sandbox_apps_are_checked_once_they_leave_the_sandbox(
    admin: httpx.AsyncClient, fcm: FCMEmulator
) -> None:
    account_id = await new_account(admin)
    body = {
        "account_id": account_id,
        "name": "Sandbox",
        "sandbox": True,
        "fcm": {"service_account": fcm.service_account()},
    }
    created = await admin.post("/admin/v1/apps", json=body, headers=ADMIN)
    assert created.status_code == 201, created.text
    # It delivers to the emulators whatever its credentials: nothing to check yet.
    assert created.json()["credentials_status"] == {}
    assert fcm.controls.records() == []
    app_id = created.json()["id"]
    renamed = await admin.patch(f"/admin/v1/apps/{app_id}", json={"name": "X"}, headers=ADMIN)
    assert renamed.json()["credentials_status"] == {}
    out = await admin.patch(f"/admin/v1/apps/{app_id}", json={"sandbox": False}, headers=ADMIN)
    assert out.json()["credentials_status"]["fcm"]["valid"] is True
    assert (await fetched(admin, app_id))["credentials_status"]["fcm"]["valid"] is True
