"""Routee dialect (seed 000): `POST /messages/{deviceType}` maps a device token to a Routee
contact under an implementation (app) of the caller's account.

Errors: 400 `{"routeeContactId": <the seed's message>, "error": "error occured",
"details": [...]}`. The seed lists its messages under `routeeContactId`, so that is where
they go; `details` says exactly what was wrong. A missing or unknown API key is 401 in the
same shape; a publishable key for an implementation it does not name is 403 (HTTP's reason
as the message). `deviceType` is matched case-insensitively (the seeds write both `Android` and
`ANDROID`). The seed's request samples quote the token with typographic quotes
(`"token": “12345678”`); a body that is not JSON only because of such quotes is read with
them as plain ones, so that the sample works when copied.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.core.providers.base import TokenProblem
from services.ingest.auth import Registrar, permit, tenants_of
from services.ingest.bodies import (
    NOT_JSON,
    Body,
    NonBlank,
    TokenText,
    documented,
    error_responses,
    parse,
)
from services.ingest.commands import register
from services.ingest.devices import platform_named, subscription_in
from services.ingest.refusals import Dialect, Invalid, Problem, Refusal
from services.ingest.registrations import registrations_of


class RouteeError(BaseModel):
    """The seed's error body: its message in `routeeContactId`, and what was wrong."""

    routeeContactId: str  # noqa: N815 - the seed's name
    error: str
    details: list[str]


router = APIRouter(tags=["Routee"], responses=error_responses(RouteeError, (400, 401, 403, 429)))

NOT_FOUND = "Routee Details not Found"
NO_CONFIG = "Device Config not found"
BAD_CONTACT = "Error in getting routee Contact"


class RouteeDevice(Body):
    """The seed's body; all three fields are required and not blank."""

    routee_contact_id: Annotated[NonBlank, Field(alias="routeeContactId")]
    token: TokenText
    implementation_id: Annotated[NonBlank, Field(alias="implementationId")]


@router.post("/messages/{device_type}", openapi_extra=documented(RouteeDevice))
async def map_device(device_type: str, holder: Registrar, request: Request) -> JSONResponse:
    """Map a device token to a Routee contact; 200 once the command is on Kafka. A
    publishable key maps under the implementations it names only (403 for others)."""
    registrations = registrations_of(request)
    body = _parse(await request.body())
    platform = platform_named(device_type)
    if platform is None:
        raise Invalid([Problem("deviceType", "must be android, ios or web")])
    app = await tenants_of(request).app(holder.account, body.implementation_id)
    if app is None:
        raise Invalid([Problem("implementationId", "no such implementation")])
    permit(holder, app.id)
    subscription = subscription_in(body.token) if platform == "web" else None
    provider = await registrations.provider(app, platform, body.token, subscription)
    if provider is None:
        raise Invalid([Problem("deviceType", f"the implementation has no provider for {platform}")])
    if isinstance(provider, TokenProblem):
        raise Invalid([Problem("token", provider.message)])
    command = register(
        app,
        source="routee",
        platform=platform,
        token=body.token,
        subscription=subscription,
        contact_id=body.routee_contact_id,
    )
    await registrations.publish([command])
    return JSONResponse({"routeeContactId": body.routee_contact_id})


def _parse(raw: bytes) -> RouteeDevice:
    try:
        return parse(RouteeDevice, raw)
    except Invalid as exc:
        curly = "\u201c".encode(), "\u201d".encode()
        if exc.problems[0].message != NOT_JSON or not any(q in raw for q in curly):
            raise
        return parse(RouteeDevice, raw.replace(curly[0], b'"').replace(curly[1], b'"'))


def _refused(path: str, refusal: Refusal) -> JSONResponse:
    # The seed's message names what was not found or not right, by the first field that
    # failed; it has no words for a request refused whole, so that gets the HTTP reason.
    if refusal.problems:
        message = _SEED_MESSAGES.get(refusal.problems[0].field, NOT_FOUND)
        details = [str(p) for p in refusal.problems]
    elif refusal.status == 401:
        # An unknown key leaves the caller's details not found.
        message = NOT_FOUND
        details = [str(Problem("Authorization", refusal.message))]
    else:
        message = HTTPStatus(refusal.status).phrase
        details = [refusal.message]
    headers = {"WWW-Authenticate": "Bearer"} if refusal.status == 401 else None
    return JSONResponse(
        {"routeeContactId": message, "error": "error occured", "details": details},
        status_code=refusal.status,
        headers=headers,
    )


_SEED_MESSAGES = {"routeeContactId": BAD_CONTACT, "token": NO_CONFIG, "deviceType": NO_CONFIG}

DIALECT = Dialect(("/messages/",), _refused)
