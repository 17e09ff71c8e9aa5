"""`pushline ingest` as a process, set up only through its admin API, takes the seeds'
registrations and puts them on Kafka: what `make run` users do."""

from __future__ import annotations

import secrets

import httpx
import pytest

from services.core.events import RegisterDevice
from services.core.settings import Settings
from tests.integration import processes
from tests.registrations import registrations_tap

pytestmark = pytest.mark.integration

SERVICE_ACCOUNT = {
    "type": "service_account",
    "project_id": "mi-proyecto",
    "private_key": "-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n",
    "client_email": "push@mi-proyecto.iam.gserviceaccount.com",
    "token_uri": "https://oauth2.googleapis.com/token",
}


async def test_admin_set_up_then_every_dialect_registers(
    child_env: dict[str, str], settings: Settings
) -> None:
    port, admin_port = processes.free_port(), processes.free_port()
    env = {
        **child_env,
        "PUSHLINE_INGEST_PORT": str(port),
        "PUSHLINE_ADMIN_PORT": str(admin_port),
        "PUSHLINE_ADMIN_TOKEN": "admin-secret",
        "PUSHLINE_MASTER_KEY": secrets.token_urlsafe(32),
    }
    ingest = processes.Process(["services.cli", "ingest"], env)
    base = f"http://127.0.0.1:{port}"
    try:
        await ingest.wait_ready(f"{base}/readyz")
        async with (
            registrations_tap(settings) as tap,
            httpx.AsyncClient(base_url=base, timeout=10) as http,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin_port}", timeout=10) as operator,
        ):
            admin = {"Authorization": "Bearer admin-secret"}
            account = await operator.post("/admin/v1/accounts", json={"name": "E"}, headers=admin)
            assert account.status_code == 201
            account_id, api_key = account.json()["id"], account.json()["api_key"]
            app = await operator.post(
                "/admin/v1/apps",
                json={
                    "account_id": account_id,
                    "name": "Mi App",
                    "package_names": ["com.empresa.miapp"],
                    "fcm": {"service_account": SERVICE_ACCOUNT},
                },
                headers=admin,
            )
            assert app.status_code == 201
            app_id = app.json()["id"]
            bearer = {"Authorization": f"Bearer {api_key}"}
            routee = await http.post(
                "/messages/android",
                json={
                    "routeeContactId": "test1",
                    "token": "AndroidToken",
                    "implementationId": app_id,
                },
                headers=bearer,
            )
            assert routee.json() == {"routeeContactId": "test1"}
            cij = await http.post(
                f"/api/v1.0/orgs/{account_id}/pushdeviceregistration/devices",
                json={
                    "MobileAppId": app_id,
                    "UserId": "u1",
                    "ApiToken": api_key,
                    "FcmDeviceToken": "FcmToken",
                },
            )
            assert cij.status_code == 202
            masiv = await http.post(
                "/v1/association/create",
                json={
                    "appId": "com.empresa.miapp",
                    "token": "MasivToken",
                    "association": {"cellphone": "573141234567"},
                },
                headers=bearer,
            )
            assert masiv.json()["status"] == "OK"
            published = [c for _, c in await tap.drain(app_id)]
        assert all(isinstance(c, RegisterDevice) for c in published)
        assert sorted((c.source, c.token) for c in published if isinstance(c, RegisterDevice)) == [
            ("cij", "FcmToken"),
            ("masiv", "MasivToken"),
            ("routee", "AndroidToken"),
        ]
        assert "secret" not in ingest.output()
    finally:
        ingest.close()
