"""Scoped keys at the ingest: every operation of every dialect and of the native API, with
a secret key, a publishable key naming the operation's app, and one naming another app.

A secret key may do everything; a publishable key registers devices, cleans them up and
reports interaction events for the apps it names, and is refused 403 in the dialect's own
shape for anything else. `test_every_api_route_is_covered` keeps the table whole: a new
route fails it until it says which keys it takes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest

from services.core.settings import Settings
from services.core.store.apps import NewApp
from services.ingest.app import create_app
from tests import dialects
from tests.contract.conftest import Tenant, TenantFactory, all_providers

pytestmark = pytest.mark.integration

DEVICE = "0" * 64
CIJ = "/api/v1.0/orgs/{org}/pushdeviceregistration"
Body = Callable[[str, str], object]  # (app id, api key) -> JSON body


@dataclass(frozen=True)
class Operation:
    """One operation: its route, a body, what a secret key gets, and whether a publishable
    key may do it."""

    method: str
    route: str
    path: str  # with {org} and {app} to fill in
    body: Body | None
    status: int  # what a secret key (or a publishable one, where allowed) is answered
    publishable: bool
    shape: dialects.Shape
    # A key in the body (Customer Insights), not in the Authorization header.
    in_body: bool = False

    def __str__(self) -> str:
        return f"{self.method} {self.route}"


def _device(app: str, key: str) -> object:
    return {"platform": "android", "token": "tok-keys", "contact_id": "ana"}


def _cij(app: str, key: str) -> dict[str, str]:
    return {"MobileAppId": app, "UserId": "ana", "ApiToken": key, "FcmDeviceToken": "tok-keys"}


def _cij_cleanup(app: str, key: str) -> dict[str, str]:
    return {"MobileAppId": app, "UserId": "ana", "ApiToken": key}


NATIVE, ROUTEE, MASIV, CIJ_SHAPE = (
    dialects.problem_json,
    dialects.routee,
    dialects.masiv,
    dialects.cij,
)
OPERATIONS = [
    # The native API.
    Operation(
        "POST", "/v1/apps/{app_id}/devices", "/v1/apps/{app}/devices", _device, 202, True, NATIVE
    ),
    Operation(
        "POST",
        "/v1/apps/{app_id}/devices:batch",
        "/v1/apps/{app}/devices:batch",
        lambda app, key: {"devices": [_device(app, key)]},
        202,
        True,
        NATIVE,
    ),
    Operation(
        "POST",
        "/v1/apps/{app_id}/devices:cleanup",
        "/v1/apps/{app}/devices:cleanup",
        lambda app, key: {"contact_id": "ana"},
        202,
        True,
        NATIVE,
    ),
    Operation(
        "DELETE",
        "/v1/apps/{app_id}/devices/{device_id}",
        f"/v1/apps/{{app}}/devices/{DEVICE}",
        None,
        404,  # past the key: no such device
        True,
        NATIVE,
    ),
    Operation(
        "POST",
        "/v1/events",
        "/v1/events",
        lambda app, key: {"notification_id": "n-none", "token": "tok", "type": "opened"},
        404,  # past the key: no such notification (its app: test_events_of_another_apps_...)
        True,
        NATIVE,
    ),
    Operation(
        "GET",
        "/v1/registrations/{registration_id}",
        "/v1/registrations/r-none",
        None,
        404,
        False,
        NATIVE,
    ),
    Operation(
        "GET",
        "/v1/apps/{app_id}/contacts/{contact_id}",
        "/v1/apps/{app}/contacts/ana",
        None,
        200,
        False,
        NATIVE,
    ),
    Operation(
        "POST",
        "/v1/notifications",
        "/v1/notifications",
        lambda app, key: {"app_id": app, "to": {"tokens": ["tok"]}, "notification": {"title": "x"}},
        202,
        False,
        NATIVE,
    ),
    Operation("GET", "/v1/notifications", "/v1/notifications", None, 200, False, NATIVE),
    Operation(
        "GET",
        "/v1/notifications/{notification_id}",
        "/v1/notifications/n-none",
        None,
        404,
        False,
        NATIVE,
    ),
    Operation(
        "DELETE",
        "/v1/notifications/{notification_id}",
        "/v1/notifications/n-none",
        None,
        404,
        False,
        NATIVE,
    ),
    Operation("GET", "/v1/apps", "/v1/apps", None, 200, False, NATIVE),
    Operation(
        "GET", "/v1/apps/{app_id}/devices", "/v1/apps/{app}/devices", None, 200, False, NATIVE
    ),
    Operation(
        "GET",
        "/v1/apps/{app_id}/devices/{device_id}",
        f"/v1/apps/{{app}}/devices/{DEVICE}",
        None,
        404,
        False,
        NATIVE,
    ),
    Operation(
        "PATCH",
        "/v1/apps/{app_id}/devices/{device_id}",
        f"/v1/apps/{{app}}/devices/{DEVICE}",
        lambda app, key: {"language": "es"},
        404,
        False,
        NATIVE,
    ),
    # Routee (seed 000).
    Operation(
        "POST",
        "/messages/{device_type}",
        "/messages/android",
        lambda app, key: {"routeeContactId": "c1", "token": "tok-keys", "implementationId": app},
        200,
        True,
        ROUTEE,
    ),
    # Customer Insights - Journeys (seed 001): the key is the body's ApiToken.
    Operation(
        "POST",
        "/api/v1.0/orgs/{org_id}/pushdeviceregistration/devices",
        CIJ + "/devices",
        _cij,
        202,
        True,
        CIJ_SHAPE,
        True,
    ),
    Operation(
        "POST",
        "/api/v1.0/orgs/{org_id}/pushdeviceregistration/devices/batch",
        CIJ + "/devices/batch",
        lambda app, key: [_cij(app, key)],
        202,
        True,
        CIJ_SHAPE,
        True,
    ),
    Operation(
        "POST",
        "/api/v1.0/orgs/{org_id}/pushdeviceregistration/devices/cleanup",
        CIJ + "/devices/cleanup",
        _cij_cleanup,
        202,
        True,
        CIJ_SHAPE,
        True,
    ),
    Operation(
        "POST",
        "/api/v1.0/orgs/{org_id}/pushdeviceregistration/devices/cleanup/batch",
        CIJ + "/devices/cleanup/batch",
        lambda app, key: [_cij_cleanup(app, key)],
        202,
        True,
        CIJ_SHAPE,
        True,
    ),
    Operation(
        "POST",
        "/api/v1.0/orgs/{org_id}/pushdeviceregistration/devices/status/",
        CIJ + "/devices/status/",
        lambda app, key: {"RegistrationRequestIds": ["r-1"], "MobileAppId": app, "ApiToken": key},
        200,
        True,
        CIJ_SHAPE,
        True,
    ),
    # Masiv (seed 002).
    Operation(
        "POST",
        "/v1/association/create",
        "/v1/association/create",
        lambda app, key: {"appId": app, "token": "tok-keys", "association": {"email": "a@b.co"}},
        200,
        True,
        MASIV,
    ),
    Operation(
        "POST",
        "/v1/notification/sendToList",
        "/v1/notification/sendToList",
        lambda app, key: {
            "tokens": ["tok"],
            "tokensByAssociation": {"appId": app},
            "notification": {"title": "t", "message": "m"},
        },
        200,
        False,
        MASIV,
    ),
]


@dataclass
class Keys:
    """A tenant with two apps: its secret key, and a publishable key for its first app."""

    tenant: Tenant
    other_app: str
    secret: str
    publishable: str


@pytest.fixture
async def keys(tenants: TenantFactory) -> Keys:
    tenant = await tenants.make()
    second = await tenants.apps.create(
        NewApp.model_validate(
            {
                "account_id": tenant.account_id,
                "id": "second-" + uuid.uuid4().hex[:12],
                "name": "Second",
                **all_providers(),
            }
        )
    )
    _, publishable = await tenants.accounts.keys.issue(
        tenant.account_id, kind="publishable", apps=[tenant.app.id]
    )
    return Keys(tenant, second.id, tenant.api_key, publishable)


async def call(
    client: httpx.AsyncClient, operation: Operation, keys: Keys, api_key: str, app_id: str
) -> httpx.Response:
    path = operation.path.format(org=keys.tenant.account_id, app=app_id)
    headers = {} if operation.in_body else {"Authorization": f"Bearer {api_key}"}
    content = None if operation.body is None else json.dumps(operation.body(app_id, api_key))
    if content is not None:
        headers["Content-Type"] = "application/json"
    return await client.request(operation.method, path, content=content, headers=headers)


@pytest.mark.parametrize("operation", OPERATIONS, ids=str)
async def test_a_secret_key_may_do_everything(
    client: httpx.AsyncClient, keys: Keys, operation: Operation
) -> None:
    answer = await call(client, operation, keys, keys.secret, keys.tenant.app.id)
    assert answer.status_code == operation.status, answer.text


@pytest.mark.parametrize("operation", OPERATIONS, ids=str)
async def test_a_publishable_key_does_only_what_ships_in_an_app(
    client: httpx.AsyncClient, keys: Keys, operation: Operation
) -> None:
    answer = await call(client, operation, keys, keys.publishable, keys.tenant.app.id)
    if operation.publishable:
        assert answer.status_code == operation.status, answer.text
    else:
        assert answer.status_code == 403, answer.text
        operation.shape(answer, answer.request.url.path)
        assert "publishable key" in answer.text


@pytest.mark.parametrize(
    "operation", [o for o in OPERATIONS if o.publishable and o.route != "/v1/events"], ids=str
)
async def test_a_publishable_key_acts_for_the_apps_it_names_only(
    client: httpx.AsyncClient, keys: Keys, operation: Operation
) -> None:
    answer = await call(client, operation, keys, keys.publishable, keys.other_app)
    assert answer.status_code == 403, answer.text
    operation.shape(answer, answer.request.url.path)
    assert keys.other_app in answer.text
    # The same app with the account's secret key: the refusal was the key's.
    allowed = await call(client, operation, keys, keys.secret, keys.other_app)
    assert allowed.status_code == operation.status, allowed.text


async def test_events_of_another_apps_notification_are_refused(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    secret = {"Authorization": f"Bearer {keys.secret}"}
    ids = {}
    for app_id in (keys.tenant.app.id, keys.other_app):
        body = {"app_id": app_id, "to": {"tokens": ["tok-1"]}, "notification": {"title": "x"}}
        sent = await client.post("/v1/notifications", json=body, headers=secret)
        assert sent.status_code == 202, sent.text
        ids[app_id] = sent.json()["id"]
    publishable = {"Authorization": f"Bearer {keys.publishable}"}

    def event(app_id: str) -> dict[str, str]:
        return {"notification_id": ids[app_id], "token": "tok-9", "type": "opened"}

    # Its own app's notification: past the key, and refused only because tok-9 got none.
    own = await client.post("/v1/events", json=event(keys.tenant.app.id), headers=publishable)
    assert own.status_code == 404
    assert "was not sent to this device" in own.text
    other = await client.post("/v1/events", json=event(keys.other_app), headers=publishable)
    assert other.status_code == 403
    dialects.problem_json(other, "/v1/events")


def test_every_api_route_is_covered(ingest_settings: Settings) -> None:
    document = create_app(ingest_settings).openapi()
    routes = {
        (method.upper(), path)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
        if "operations" not in operation.get("tags", [])
    }
    assert routes == {(o.method, o.route) for o in OPERATIONS}
