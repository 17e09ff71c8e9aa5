"""Each dialect's error shape, as tests check an answer against it, and a request of each
dialect to be answered in it."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx

from tests.contract.conftest import Tenant

Shape = Callable[[httpx.Response, str], None]


def problem_json(response: httpx.Response, path: str) -> None:
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == response.status_code


def routee(response: httpx.Response, path: str) -> None:
    body = response.json()
    assert body.keys() == {"routeeContactId", "error", "details"}
    assert body["error"] == "error occured"
    assert isinstance(body["routeeContactId"], str)


def cij(response: httpx.Response, path: str) -> None:
    body = response.json()
    assert {"type", "title", "status", "errors"} <= body.keys()
    assert body["status"] == response.status_code
    assert all(isinstance(v, list) for v in body["errors"].values())


def masiv(response: httpx.Response, path: str) -> None:
    body = response.json()
    assert body.keys() == {"timestamp", "status", "error", "message", "path"}
    assert body["status"] == response.status_code
    assert body["path"] == path


def requests_of(tenant: Tenant, n: int) -> tuple[str, dict[str, str], dict[str, object], Shape]:
    """The n-th request: each dialect's registration in turn, each with its own token."""
    token = f"tok-{n}-{uuid.uuid4().hex[:8]}"
    bearer = {"Authorization": f"Bearer {tenant.api_key}"}
    app = tenant.app.id
    match n % 4:
        case 0:
            body: dict[str, object] = {"platform": "android", "token": token}
            return f"/v1/apps/{app}/devices", bearer, body, problem_json
        case 1:
            body = {"routeeContactId": f"c-{n}", "token": token, "implementationId": app}
            return "/messages/android", bearer, body, routee
        case 2:
            body = {"token": token, "association": {"email": f"u{n}@example.com"}}
            return "/v1/association/create", bearer, body, masiv
        case _:
            body = {
                "MobileAppId": app,
                "UserId": f"u-{n}",
                "ApiToken": tenant.api_key,
                "FcmDeviceToken": token,
            }
            path = f"/api/v1.0/orgs/{tenant.account_id}/pushdeviceregistration/devices"
            return path, {}, body, cij
