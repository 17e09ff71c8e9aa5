"""The ingest in-process on the real Kafka and store, with tenants and a tap on
`push.registrations` to see what it published."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from pydantic import SecretStr
from pymongo.asynchronous.database import AsyncDatabase

from services.core.credentials import APNSCredentials, FCMCredentials, WebPushCredentials
from services.core.secrets import Vault
from services.core.settings import Settings
from services.core.store.accounts import Accounts
from services.core.store.apps import App, Apps, NewApp
from services.core.store.client import Document
from services.ingest.app import create_admin_app, create_app
from tests.registrations import Tap, registrations_tap
from tests.unit.providers.keys import subscriber

ADMIN_TOKEN = "admin-" + uuid.uuid4().hex
MASTER_KEY = secrets.token_urlsafe(32)
_BROWSER = subscriber()
# A browser's subscription keys (RFC 8291): a P-256 public key and a 16-byte auth secret.
SUBSCRIPTION_KEYS = {"p256dh": _BROWSER.p256dh, "auth": _BROWSER.auth_b64}


@pytest.fixture
def ingest_settings(settings: Settings) -> Settings:
    """This test's settings with the admin API on and a master key."""
    return settings.model_copy(
        update={"admin_token": SecretStr(ADMIN_TOKEN), "master_key": SecretStr(MASTER_KEY)}
    )


@pytest.fixture
async def client(ingest_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client to the public ingest app, its lifespan (Kafka, store) running."""
    async with serving(create_app(ingest_settings), "http://ingest") as http:
        yield http


@pytest.fixture
async def admin(ingest_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client to the admin app (the admin listener's), its lifespan running."""
    async with serving(create_admin_app(ingest_settings), "http://admin") as http:
        yield http


@asynccontextmanager
async def serving(app: FastAPI, base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client to `app` in-process, its lifespan running."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
            yield http


def apns_key() -> str:
    """A fresh EC P-256 key in PEM, as an Apple .p8 file holds one."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def fcm_credentials() -> FCMCredentials:
    return FCMCredentials(
        service_account={
            "type": "service_account",
            "project_id": "pushline-test",
            "private_key": "-----BEGIN PRIVATE KEY-----\nfcm-secret\n-----END PRIVATE KEY-----\n",
            "client_email": "sender@pushline-test.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.googleapis.com/token",
        }
    )


def all_providers() -> dict[str, object]:
    return {
        "fcm": fcm_credentials(),
        "apns": APNSCredentials(
            team_id="ABCDE12345",
            key_id="KEY1234567",
            topic="com.empresa.miapp",
            private_key=apns_key(),
        ),
        "webpush": WebPushCredentials(
            vapid_private_key="vapid-private-secret",
            vapid_public_key="BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1",
            subject="mailto:ops@example.com",
        ),
    }


@dataclass
class Tenant:
    """An account, one of its API keys, and its app (with every provider)."""

    account_id: str
    api_key: str
    app: App


@pytest.fixture
async def tenants(db: AsyncDatabase[Document]) -> TenantFactory:
    return TenantFactory(db)


class TenantFactory:
    """Makes accounts with apps in the test's database, straight through the repositories."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.accounts = Accounts(db)
        self.apps = Apps(db, Vault(SecretStr(MASTER_KEY)))

    async def make(
        self,
        *,
        app_id: str | None = None,
        package_names: list[str] | None = None,
        providers: dict[str, object] | None = None,
    ) -> Tenant:
        account, api_key = await self.accounts.create("Tenant " + uuid.uuid4().hex[:6])
        new = NewApp.model_validate(
            {
                "account_id": account.id,
                "id": app_id or uuid.uuid4().hex[:24],
                "name": "App",
                "package_names": package_names or [],
                **(all_providers() if providers is None else providers),
            }
        )
        return Tenant(account.id, api_key, await self.apps.create(new))


@pytest.fixture
async def tap(client: httpx.AsyncClient, ingest_settings: Settings) -> AsyncIterator[Tap]:
    """What the ingest publishes from now on; started after the client, whose lifespan
    creates the topic."""
    async with registrations_tap(ingest_settings) as opened:
        yield opened
