"""Masiv dialect (seed 002): `POST /v1/association/create` links a device token to a
cellphone and/or an email under an app of the caller's account (Bearer API key);
`POST /v1/notification/sendToList` sends to raw tokens and to the devices associated
with cellphones and emails.

`appId` matches the package names (or, failing that, the id) of the account's apps; it
may be left out when the account has exactly one app. The seed does not say the device's
platform: an optional `deviceType` (`Android`, `iOS`, `Web`, any case) says it, otherwise
a JSON push subscription is Web, an APNs-shaped token (64+ hex digits) iOS, anything else
Android; a token the app already has keeps its platform (the resolver's rule). Cellphones
are stored as digits only, emails lower-cased.

Errors take the seed's (Spring Boot's) shape `{"timestamp", "status", "error", "message",
"path"}`, with `path` the path that was called: a publishable key (services/ingest/auth.py)
is a 403 on `sendToList` and on an app it does not name.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, Field, model_validator

from services.core.errors import IdempotencyConflictError
from services.core.events import Audience, Content, Options, SendRequest, WebPushSubscription
from services.core.fields import Platform
from services.core.providers.apns import is_apns_token
from services.core.providers.base import TokenProblem
from services.core.providers.registry import names as provider_names
from services.core.store.accounts import Account
from services.core.store.apps import App
from services.ingest.auth import Caller, Registrar, Tenants, permit, tenants_of
from services.ingest.bodies import (
    Body,
    Cellphone,
    Email,
    NonBlank,
    NonBlankText,
    TokenText,
    documented,
    error_responses,
    parse,
)
from services.ingest.commands import register
from services.ingest.devices import PLATFORMS, subscription_in
from services.ingest.refusals import Dialect, Refusal
from services.ingest.registrations import registrations_of
from services.ingest.sending import Sends, sends_of
from services.ingest.throttle import throttle_of


class MasivError(BaseModel):
    """The seed's (Spring Boot's) error body."""

    timestamp: str
    status: int
    error: str
    message: str
    path: str


router = APIRouter(tags=["Masiv"], responses=error_responses(MasivError, (400, 401, 403, 429)))


def _platform(value: str) -> str:
    if value.lower() not in PLATFORMS:
        raise ValueError("must be Android, iOS or Web")
    return value.lower()


class Association(Body):
    """At least one of a cellphone (country code + number) and an email."""

    cellphone: Cellphone | None = None
    email: Email | None = None

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
async def create_association(holder: Registrar, request: Request) -> JSONResponse:
    """Associate a device token with a cellphone and/or email; 200 once on Kafka. A
    publishable key associates under the apps it names only (403 for others)."""
    registrations = registrations_of(request)
    body = parse(AssociationRequest, await request.body())
    app = await _app(tenants_of(request), holder.account, body.app_id)
    permit(holder, app.id)
    subscription = subscription_in(body.token)
    platform = _platform_of(body, subscription)
    provider = await registrations.provider(app, platform, body.token, subscription)
    if provider is None:
        raise Refusal(400, f"the app has no push configuration for {platform} devices")
    if isinstance(provider, TokenProblem):
        raise Refusal(400, provider.message)
    command = register(
        app,
        source="masiv",
        platform=platform,
        token=body.token,
        subscription=subscription,
        cellphone=body.association.cellphone,
        email=body.association.email,
    )
    await registrations.publish([command])
    return JSONResponse({"status": "OK", "data": "Successful association", "error": None})


async def _app(tenants: Tenants, account: Account, app_id: str | None) -> App:
    """The app `appId` names (by package name, then id), or the account's only app.
    Raises Refusal when there is no such app."""
    if app_id is None:
        apps = await tenants.apps.of_account(account.id, limit=2)
        if len(apps) == 1:
            return apps[0]
        if not apps:
            raise Refusal(400, "the account has no app")
        raise Refusal(400, "appId is required: the account has more than one app")
    app = await tenants.apps.find_by_package(account.id, app_id)
    if app is None:
        app = await tenants.app(account, app_id)
    if app is None:
        raise Refusal(400, f"appId {app_id} matches no app of the account")
    return app


def _platform_of(body: AssociationRequest, subscription: WebPushSubscription | None) -> Platform:
    if body.device_type is not None:
        return PLATFORMS[body.device_type]
    if subscription is not None:
        return "web"
    return "ios" if is_apns_token(body.token) else "android"


# Data keys FCM keeps for itself (seed 002): these words, and anything starting with these.
_RESERVED_KEYS = ("from", "message_type")
_RESERVED_PREFIXES = ("google", "gcm")
MAX_LIST = 10_000


def _data_keys(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        if key in _RESERVED_KEYS or key.lower().startswith(_RESERVED_PREFIXES):
            raise ValueError(
                f"key {key!r} is reserved (from, message_type, google*, gcm* are not allowed)"
            )
    return value


class MasivNotification(Body):
    """`title` and `message` are required, `imageUrl` optional."""

    title: Annotated[NonBlankText, Field(max_length=1000)]
    message: Annotated[NonBlankText, Field(max_length=4000)]
    image_url: Annotated[str | None, Field(alias="imageUrl", max_length=2048)] = None


class TokensByAssociation(Body):
    """Cellphones and/or emails, narrowed by app and device types; or `appId` alone, which
    names the app for the request's raw tokens."""

    app_id: Annotated[NonBlank | None, Field(alias="appId")] = None
    device_types: Annotated[
        list[Annotated[NonBlank, AfterValidator(_platform)]],
        Field(alias="deviceTypesToSend", default_factory=list, max_length=3),
    ]
    cellphones: Annotated[
        list[Cellphone],
        Field(default_factory=list, max_length=MAX_LIST),
    ]
    emails: Annotated[
        list[Email],
        Field(default_factory=list, max_length=MAX_LIST),
    ]

    @model_validator(mode="after")
    def _contacts_or_app(self) -> TokensByAssociation:
        if not (self.cellphones or self.emails or self.app_id):
            raise ValueError("tokensByAssociation needs cellphones, emails, appId or a mix")
        return self


class SendToList(Body):
    """The seed's body."""

    tokens: Annotated[list[TokenText], Field(default_factory=list, max_length=MAX_LIST)]
    by_association: Annotated[TokensByAssociation | None, Field(alias="tokensByAssociation")] = None
    notification: MasivNotification
    data: Annotated[
        dict[str, str], Field(default_factory=dict, max_length=100), AfterValidator(_data_keys)
    ]

    @model_validator(mode="after")
    def _tokens_or_association(self) -> SendToList:
        association = self.by_association
        if not self.tokens and association is None:
            raise ValueError("give tokens, tokensByAssociation or both")
        if not self.tokens and association and not (association.cellphones or association.emails):
            raise ValueError(
                "tokensByAssociation needs cellphones or emails when there are no tokens"
            )
        return self


@router.post("/v1/notification/sendToList", openapi_extra=documented(SendToList))
async def send_to_list(account: Caller, request: Request) -> JSONResponse:
    """Send to raw tokens and associated cellphones/emails; 200 once on Kafka."""
    tenants = tenants_of(request)
    body = parse(SendToList, _trimmed_keys(await request.body()))
    association = body.by_association
    app: App | None = None
    if association is not None and association.app_id is not None:
        app = await _app(tenants, account, association.app_id)
    else:
        apps = await tenants.apps.of_account(account.id, limit=2)
        if not apps:
            raise Refusal(400, "the account has no app")
        app = apps[0] if len(apps) == 1 else None
    if app is None and await sends_of(request).unregistered(account.id, body.tokens):
        raise Refusal(
            400,
            "some tokens are not registered and the account has several apps: "
            "give tokensByAssociation.appId to say which app sends to them",
        )
    content = Content(
        title=body.notification.title,
        body=body.notification.message,
        image_url=body.notification.image_url,
    )
    refused = Sends.check(
        content,
        body.data,
        Options(),
        sorted(app.configured) if app is not None else provider_names(),
    )
    if refused is not None:
        raise Refusal(400, refused)
    send = SendRequest(
        notification_id=str(uuid.uuid4()),
        account_id=account.id,
        app_id=app.id if app is not None else None,
        to=Audience(
            tokens=body.tokens,
            cellphones=association.cellphones if association else [],
            emails=association.emails if association else [],
            platforms=[PLATFORMS[t] for t in association.device_types] if association else [],
            tokens_from="account",
        ),
        notification=content,
        data=body.data,
    )
    if send.app_id is not None:
        await throttle_of(request).send(account.id, send.app_id)
    try:
        await sends_of(request).accept(send, request.headers.get("idempotency-key"))
    except IdempotencyConflictError as exc:
        # Seed 002 knows no other refusal than 400.
        raise Refusal(400, str(exc)) from exc
    return JSONResponse({"status": "OK", "data": "Notification has been sent", "error": None})


def _trimmed_keys(raw: bytes) -> bytes:
    """The body with stray whitespace around object keys removed (the seed's own example
    writes `"cellphones "`); unparseable bodies pass through for `parse` to refuse."""
    try:
        return json.dumps(json.loads(raw, object_pairs_hook=_trimmed)).encode()
    except (ValueError, RecursionError):
        # Nested deeper than Python's JSON reads: `parse` refuses it with its own depth limit.
        return raw


def _trimmed(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return {key.strip(): value for key, value in pairs}


def _refused(path: str, refusal: Refusal) -> JSONResponse:
    return JSONResponse(
        {
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "status": refusal.status,
            "error": HTTPStatus(refusal.status).phrase,
            "message": refusal.message,
            "path": path,
        },
        status_code=refusal.status,
    )


DIALECT = Dialect(("/v1/association/", "/v1/notification/"), _refused)
