"""One registry whatever the door: a device registered through one dialect and associated
through another stays the device it was. The ingest runs in-process; what it publishes is
put through the resolver's and feedback's registration logic against the real store."""

from __future__ import annotations

import uuid

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core import topics
from services.core.events import PushJob, RegisterDevice, SendRequest
from services.core.settings import Settings
from services.core.store.client import Document
from services.core.tokens import hash_token
from services.feedback.registrations import apply_registration
from services.resolver.fanout import expand
from services.resolver.registrations import resolve_registration
from tests.contract.conftest import SUBSCRIPTION_KEYS, TenantFactory, all_providers
from tests.integration.kafka_io import read
from tests.registrations import Tap

pytestmark = pytest.mark.integration

PACKAGE = "com.empresa.miapp"


def bearer(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


async def settle(tap: Tap, app_id: str, tenants: TenantFactory, db: AsyncDatabase[Document]) -> int:
    """Resolve and apply what the ingest published for the app; how many were stored."""
    stored = 0
    for _, command in await tap.drain(app_id):
        assert isinstance(command, RegisterDevice)
        verdict = await resolve_registration(command, tenants.apps, db, allow_private=False)
        assert not isinstance(verdict, PushJob)
        await apply_registration(verdict, db)
        stored += verdict.status == "Success"
    return stored


async def test_a_routee_web_token_associated_through_masiv_stays_a_web_device(
    client: httpx.AsyncClient,
    tap: Tap,
    tenants: TenantFactory,
    db: AsyncDatabase[Document],
    ingest_settings: Settings,
) -> None:
    tenant = await tenants.make(package_names=[PACKAGE])
    headers = bearer(tenant.api_key)
    web_token = "fcm-web:APA91b-" + uuid.uuid4().hex
    routee = await client.post(
        "/messages/web",
        json={"routeeContactId": "routee-1", "token": web_token, "implementationId": tenant.app.id},
        headers=headers,
    )
    assert routee.status_code == 200
    assert await settle(tap, tenant.app.id, tenants, db) == 1

    masiv = await client.post(
        "/v1/association/create",
        json={"appId": PACKAGE, "token": web_token, "association": {"email": "ana@example.com"}},
        headers=headers,
    )
    assert masiv.json() == {"status": "OK", "data": "Successful association", "error": None}
    assert await settle(tap, tenant.app.id, tenants, db) == 1

    device = await db.devices.find_one({"token_hash": hash_token(web_token)})
    assert device is not None
    assert (device["platform"], device["provider"]) == ("web", "fcm")
    assert (device["contact_id"], device["email"]) == ("routee-1", "ana@example.com")
    assert await db.devices.count_documents({}) == 1

    send = await client.post(
        "/v1/notification/sendToList",
        json={
            "tokensByAssociation": {
                "appId": PACKAGE,
                "deviceTypesToSend": ["ANDROID", "IOS"],
                "emails": ["ana@example.com"],
            },
            "notification": {"title": "Hola", "message": "Para Android e iOS"},
        },
        headers=headers,
    )
    assert send.status_code == 200
    request = await read(
        ingest_settings,
        topics.SEND_REQUESTS,
        lambda m: isinstance(m, SendRequest) and m.account_id == tenant.account_id,
    )
    assert isinstance(request, SendRequest)
    assert [job async for job in expand(request, db)] == []


async def test_an_association_of_a_web_push_endpoint_needs_no_provider_for_its_guess(
    client: httpx.AsyncClient, tap: Tap, tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    # The app delivers by Web Push only: the endpoint's shape says Android (FCM), which the
    # app has no credentials for, but the app has that device already.
    tenant = await tenants.make(
        package_names=[PACKAGE], providers={"webpush": all_providers()["webpush"]}
    )
    headers = bearer(tenant.api_key)
    endpoint = f"https://push.example.net/send/{uuid.uuid4().hex}"
    native = await client.post(
        f"/v1/apps/{tenant.app.id}/devices",
        json={"platform": "web", "subscription": {"endpoint": endpoint, "keys": SUBSCRIPTION_KEYS}},
        headers=headers,
    )
    assert native.status_code == 202
    assert await settle(tap, tenant.app.id, tenants, db) == 1

    masiv = await client.post(
        "/v1/association/create",
        json={"appId": PACKAGE, "token": endpoint, "association": {"cellphone": "573141234567"}},
        headers=headers,
    )
    assert masiv.status_code == 200, masiv.text
    assert await settle(tap, tenant.app.id, tenants, db) == 1
    device = await db.devices.find_one({"token_hash": hash_token(endpoint)})
    assert device is not None
    assert (device["platform"], device["provider"], device["cellphone"]) == (
        "web",
        "webpush",
        "573141234567",
    )

    # A token the app does not have is still judged by its guess.
    unknown = await client.post(
        "/v1/association/create",
        json={
            "appId": PACKAGE,
            "token": "fcm-token-1",
            "association": {"cellphone": "573141234567"},
        },
        headers=headers,
    )
    assert unknown.status_code == 400
    assert unknown.json()["message"] == "the app has no push configuration for android devices"
