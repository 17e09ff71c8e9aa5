"""The registry's rules in the resolver and feedback logic, against the real store: the token
checks every stage shares, and one device per (app, token) whichever door it came in by."""

from __future__ import annotations

import uuid

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core.events import (
    Platform,
    PushJob,
    RegisterDevice,
    RegistrationResolved,
    WebPushKeys,
    WebPushSubscription,
)
from services.core.store.apps import App, Apps, NewApp
from services.core.store.client import Document
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
