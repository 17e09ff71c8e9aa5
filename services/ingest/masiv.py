"""Masiv dialect (seed 002): `POST /v1/association/create` links a device token to a
cellphone and/or an email under an app of the caller's account (Bearer API key).

`appId` matches the package names (or, failing that, the id) of the account's apps; it
may be left out when the account has exactly one app. The seed does not say the device's
platform: an optional `deviceType` (`Android`, `iOS`, `Web`, any case) says it, otherwise
a JSON push subscription is Web, an APNs-shaped token (64+ hex digits) iOS, anything else
Android. Cellphones are stored as digits only, emails lower-cased.

Errors take the seed's (Spring Boot's) shape `{"timestamp", "status", "error", "message",
"path"}`, with `path` the path that was called.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, Field, model_validator

from services.core.devices import is_apns_token, normalize_cellphone, normalize_email
from services.core.events import Platform, WebPushSubscription
from services.core.store.accounts import Account
from services.core.store.apps import App
from services.ingest.bodies import Body, Invalid, NonBlank, TokenText, documented, parse
from services.ingest.registry import (
    Registry,
    bearer,
    device_provider,
    register,
    registry_of,
    subscription_in,
)

router = APIRouter(tags=["Masiv"])

_PLATFORMS: dict[str, Platform] = {"android": "android", "ios": "ios", "web": "web"}


def _platform(value: str) -> str:
    if value.lower() not in _PLATFORMS:
        raise ValueError("must be Android, iOS or Web")
    return value.lower()


class Association(Body):
    """At least one of a cellphone (country code + number) and an email."""

    cellphone: Annotated[NonBlank, AfterValidator(normalize_cellphone)] | None = None
    email: Annotated[NonBlank, AfterValidator(normalize_email)] | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> Association:
        if self.cellphone is None and self.email is None:
            raise ValueError("association needs a cellphone, an email or both")
        return self


class AssociationRequest(Body):
    """The seed's body, plus the optional `deviceType`."""

    app_id: Annotated[NonBlank | None, Field(alias="appId")] = None
    token: TokenText
    association: Association
    device_type: Annotated[
        Annotated[NonBlank, AfterValidator(_platform)] | None, Field(alias="deviceType")
    ] = None


@router.post("/v1/association/create", openapi_extra=documented(AssociationRequest))
async def create_association(request: Request) -> JSONResponse:
    """Associate a device token with a cellphone and/or email; 200 once on Kafka."""
    registry = registry_of(request)
    account = await registry.account(bearer(request))
    if account is None:
        return _error(request, 401, "missing or unknown API key")
    try:
        body = parse(AssociationRequest, await request.body())
    except Invalid as exc:
        return _error(request, 400, str(exc))
    app, problem = await _app(registry, account, body.app_id)
    if app is None:
        return _error(request, 400, problem)
    subscription = subscription_in(body.token)
    platform = _platform_of(body, subscription)
    if device_provider(app, platform, body.token, subscription) is None:
        return _error(request, 400, f"the app has no push configuration for {platform} devices")
    command = register(
        app,
        source="masiv",
        platform=platform,
        token=body.token,
        subscription=subscription,
        cellphone=body.association.cellphone,
        email=body.association.email,
    )
    await registry.publish([command])
    return JSONResponse({"status": "OK", "data": "Successful association", "error": None})


async def _app(registry: Registry, account: Account, app_id: str | None) -> tuple[App | None, str]:
    if app_id is None:
        apps = await registry.apps.of_account(account.id, limit=2)
        if len(apps) == 1:
            return apps[0], ""
        if not apps:
            return None, "the account has no app"
        return None, "appId is required: the account has more than one app"
    app = await registry.apps.find_by_package(account.id, app_id)
    if app is None:
        app = await registry.app(account, app_id)
    return app, "" if app is not None else f"appId {app_id} matches no app of the account"


def _platform_of(body: AssociationRequest, subscription: WebPushSubscription | None) -> Platform:
    if body.device_type is not None:
        return _PLATFORMS[body.device_type]
    if subscription is not None:
        return "web"
    return "ios" if is_apns_token(body.token) else "android"


def _error(request: Request, status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "status": status,
            "error": "Bad Request" if status == 400 else "Unauthorized",
            "message": message,
            "path": request.url.path,
        },
        status_code=status,
    )
