"""The registry's rules in the resolver and feedback logic, against the real store: the token
checks every stage shares, and one device per (app, token) whichever door it came in by."""

from __future__ import annotations

import uuid

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core.events import (
    PushJob,
    RegisterDevice,
    RegistrationResolved,
    SendRequest,
    WebPushKeys,
    WebPushSubscription,
)
from services.core.fields import Platform
from services.core.store.apps import App, Apps, NewApp
from services.core.store.client import Document
from services.core.tokens import hash_token
from services.feedback.registrations import apply_registration
from services.resolver.fanout import expand
from services.resolver.registrations import resolve_registration
from tests.contract.conftest import SUBSCRIPTION_KEYS, TenantFactory

pytestmark = pytest.mark.integration


@pytest.fixture
def tenants(db: AsyncDatabase[Document]) -> TenantFactory:
    return TenantFactory(db)


async def make_app(tenants: TenantFactory, *, sandbox: bool = False) -> App:
    app = (await tenants.make()).app
    if sandbox:
        app = await tenants.apps.create(
            NewApp(account_id=app.account_id, name="Sandbox", sandbox=True)
        )
    return app


def command(app: App, platform: Platform = "android", **fields: object) -> RegisterDevice:
    return RegisterDevice.model_validate(
        {
            "request_id": f"req-{uuid.uuid4()}",
            "account_id": app.account_id,
            "app_id": app.id,
            "platform": platform,
            "token": f"fcm-token-{uuid.uuid4()}",
            "source": "kafka",
            **fields,
        }
    )


def web(app: App, endpoint: str) -> RegisterDevice:
    subscription = WebPushSubscription(endpoint=endpoint, keys=WebPushKeys(**SUBSCRIPTION_KEYS))
    return command(app, "web", token=endpoint, subscription=subscription)


async def resolve(
    command: RegisterDevice, apps: Apps, db: AsyncDatabase[Document], *, allow_private: bool
) -> RegistrationResolved:
    verdict = await resolve_registration(command, apps, db, allow_private=allow_private)
    assert not isinstance(verdict, PushJob)
    return verdict


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("f" * 1025, "DeviceTokenTooLong"),
        ("fcm\x00token", "FailedToStoreDevice"),
        ("fcm\r\ntoken", "FailedToStoreDevice"),
        ("fcm-token ", "FailedToStoreDevice"),
    ],
)
async def test_an_upstream_command_with_a_bad_token_fails_with_its_reason(
    tenants: TenantFactory, db: AsyncDatabase[Document], token: str, reason: str
) -> None:
    # Upstream systems publish straight on push.registrations: the resolver checks what
    # the ingest would have refused.
    app = await make_app(tenants)
    verdict = await resolve(command(app, token=token), tenants.apps, db, allow_private=False)
    assert (verdict.status, verdict.failure_reason) == ("Failed", reason)


async def test_plain_http_endpoints_only_where_private_targets_are_allowed(
    tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    app, sandbox = await make_app(tenants), await make_app(tenants, sandbox=True)
    apps = tenants.apps
    local = "http://127.0.0.1:9443/push/abc"
    refused = await resolve(web(app, local), apps, db, allow_private=False)
    assert (refused.status, refused.failure_reason) == ("Failed", "FailedToStoreDevice")
    allowed = await resolve(web(app, local), apps, db, allow_private=True)
    assert (allowed.status, allowed.provider) == ("Success", "webpush")
    in_sandbox = await resolve(web(sandbox, local), apps, db, allow_private=False)
    assert (in_sandbox.status, in_sandbox.provider) == ("Success", "webpush")
    gopher = await resolve(web(app, "gopher://push.example.net/x"), apps, db, allow_private=True)
    assert (gopher.status, gopher.failure_reason) == ("Failed", "FailedToStoreDevice")


async def register(
    command: RegisterDevice, apps: Apps, db: AsyncDatabase[Document]
) -> RegistrationResolved:
    """What the resolver and then feedback do with a registration command."""
    verdict = await resolve(command, apps, db, allow_private=False)
    await apply_registration(verdict, db)
    return verdict


async def device(db: AsyncDatabase[Document], app: App, token: str) -> Document:
    found = await db.devices.find_one({"app_id": app.id, "token_hash": hash_token(token)})
    assert found is not None
    return found


async def jobs(db: AsyncDatabase[Document], app: App, **to: object) -> list[PushJob]:
    request = SendRequest.model_validate(
        {
            "notification_id": f"n-{uuid.uuid4()}",
            "account_id": app.account_id,
            "app_id": app.id,
            "to": to,
            "notification": {"title": "Hola"},
        }
    )
    return [job async for job in expand(request, db)]


async def test_an_association_keeps_the_platform_and_provider_another_dialect_registered(
    tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    app = await make_app(tenants)
    web_token = "fcm-web:APA91b-" + uuid.uuid4().hex
    # Routee registers an FCM web token...
    first = await register(
        command(app, "web", token=web_token, contact_id="routee-1", source="routee"),
        tenants.apps,
        db,
    )
    assert (first.status, first.provider) == ("Success", "fcm")
    # ...then Masiv associates it with an email, guessing Android from the token's shape.
    association = command(app, "android", token=web_token, email="ana@example.com", source="masiv")
    verdict = await register(association, tenants.apps, db)
    assert (verdict.status, verdict.provider, verdict.command.platform) == ("Success", "fcm", "web")

    stored = await device(db, app, web_token)
    assert (stored["platform"], stored["provider"], stored["subscription"]) == ("web", "fcm", None)
    assert (stored["contact_id"], stored["email"], stored["cellphone"]) == (
        "routee-1",
        "ana@example.com",
        None,
    )
    assert await db.devices.count_documents({}) == 1
    # A send to the email for Android and iOS devices does not reach the web device.
    assert await jobs(db, app, emails=["ana@example.com"], platforms=["android", "ios"]) == []
    [job] = await jobs(db, app, emails=["ana@example.com"], platforms=["web"])
    assert (job.token, job.platform, job.provider) == (web_token, "web", "fcm")


async def test_an_association_keeps_a_web_push_subscription(
    tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    app = await make_app(tenants)
    endpoint = f"https://push.example.net/send/{uuid.uuid4().hex}"
    await register(web(app, endpoint), tenants.apps, db)
    # Masiv gets the endpoint as a plain token: Android by its shape, had the app not had it.
    association = command(app, "android", token=endpoint, cellphone="573141234567")
    verdict = await register(association, tenants.apps, db)
    assert (verdict.status, verdict.provider) == ("Success", "webpush")
    stored = await device(db, app, endpoint)
    assert (stored["platform"], stored["provider"]) == ("web", "webpush")
    assert stored["subscription"]["keys"] == {"v": 1, **SUBSCRIPTION_KEYS}
    assert stored["cellphone"] == "573141234567"


async def test_a_new_token_takes_the_guess_and_contacts_the_command_leaves_out_stay(
    tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    app = await make_app(tenants)
    token = "fcm-" + uuid.uuid4().hex
    await register(command(app, "ios", token=token, email="a@example.com"), tenants.apps, db)
    await register(command(app, "android", token=token, contact_id="c-1"), tenants.apps, db)
    await register(command(app, "web", token=token, email="b@example.com"), tenants.apps, db)
    stored = await device(db, app, token)
    assert (stored["platform"], stored["provider"]) == ("ios", "fcm")
    assert (stored["contact_id"], stored["email"], stored["cellphone"]) == (
        "c-1",
        "b@example.com",
        None,
    )


async def test_feedback_keeps_the_first_delivery_when_verdicts_raced_the_store(
    tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    # Two registrations of a new token resolved before feedback stored either: both were
    # judged new, so the second's guess reaches feedback, which must not apply it.
    app = await make_app(tenants)
    token = "fcm-" + uuid.uuid4().hex
    first = await resolve(command(app, "web", token=token), tenants.apps, db, allow_private=False)
    second = await resolve(
        command(app, "android", token=token, email="a@example.com"),
        tenants.apps,
        db,
        allow_private=False,
    )
    await apply_registration(first, db)
    await apply_registration(second, db)
    stored = await device(db, app, token)
    assert (stored["platform"], stored["email"]) == ("web", "a@example.com")
