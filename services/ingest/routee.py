"""Routee dialect (seed 000): `POST /messages/{deviceType}` maps a device token to a Routee
contact under an implementation (app) of the caller's account.

Errors: 400 `{"routeeContactId": <the seed's message>, "error": "error occured",
"details": [...]}`. The seed lists its messages under `routeeContactId`, so that is where
they go; `details` says exactly what was wrong. A missing or unknown API key is 401 in the
same shape. `deviceType` is matched case-insensitively (the seeds write both `Android` and
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

from services.core.devices import TokenProblem
from services.core.events import Platform
from services.ingest.bodies import (
    NOT_JSON,
    Body,
    Invalid,
    NonBlank,
    Problem,
    TokenText,
    documented,
    error_responses,
    parse,
)
from services.ingest.registry import bearer, caller, register, registry_of, subscription_in


class RouteeError(BaseModel):
    """The seed's error body: its message in `routeeContactId`, and what was wrong."""

    routeeContactId: str  # noqa: N815 - the seed's name
    error: str
    details: list[str]


router = APIRouter(tags=["Routee"], responses=error_responses(RouteeError, (400, 401)))

NOT_FOUND = "Routee Details not Found"
NO_CONFIG = "Device Config not found"
BAD_CONTACT = "Error in getting routee Contact"
_PLATFORMS: dict[str, Platform] = {"android": "android", "ios": "ios", "web": "web"}


class RouteeDevice(Body):
    """The seed's body; all three fields are required and not blank."""

    routee_contact_id: Annotated[NonBlank, Field(alias="routeeContactId")]
    token: TokenText
    implementation_id: Annotated[NonBlank, Field(alias="implementationId")]


@router.post("/messages/{device_type}", openapi_extra=documented(RouteeDevice))
async def map_device(device_type: str, request: Request) -> JSONResponse:
    """Map a device token to a Routee contact; 200 once the command is on Kafka."""
    registry = registry_of(request)
    account = await caller(request, bearer(request))
    if account is None:
        return _error(401, NOT_FOUND, [Problem("Authorization", "missing or unknown API key")])
    try:
        body = _parse(await request.body())
    except Invalid as exc:
        return _error(400, _message_for(exc.problems), exc.problems)
    platform = _PLATFORMS.get(device_type.lower())
    if platform is None:
        return _error(400, NO_CONFIG, [Problem("deviceType", "must be android, ios or web")])
    app = await registry.app(account, body.implementation_id)
    if app is None:
        return _error(400, NOT_FOUND, [Problem("implementationId", "no such implementation")])
    subscription = subscription_in(body.token) if platform == "web" else None
    provider = await registry.provider(app, platform, body.token, subscription)
    if provider is None:
        problem = Problem("deviceType", f"the implementation has no provider for {platform}")
        return _error(400, NO_CONFIG, [problem])
    if isinstance(provider, TokenProblem):
        return _error(400, NO_CONFIG, [Problem("token", provider.message)])
    command = register(
        app,
        source="routee",
        platform=platform,
        token=body.token,
        subscription=subscription,
        contact_id=body.routee_contact_id,
    )
    await registry.publish([command])
    return JSONResponse({"routeeContactId": body.routee_contact_id})


def _parse(raw: bytes) -> RouteeDevice:
    try:
        return parse(RouteeDevice, raw)
    except Invalid as exc:
        curly = "\u201c".encode(), "\u201d".encode()
        if exc.problems[0].message != NOT_JSON or not any(q in raw for q in curly):
            raise
        return parse(RouteeDevice, raw.replace(curly[0], b'"').replace(curly[1], b'"'))


def _message_for(problems: list[Problem]) -> str:
    field = problems[0].field
    if field == "routeeContactId":
        return BAD_CONTACT
    if field == "token":
        return NO_CONFIG
    return NOT_FOUND


def refusal(status: int, message: str) -> JSONResponse:
    """An answer in this dialect's error shape to a request refused before its route ran
    (too large, overloaded); the seed's messages are for bad bodies, so it gives the
    HTTP reason."""
    return _error(status, HTTPStatus(status).phrase, [Problem("", message)])


def _error(status: int, message: str, problems: list[Problem]) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        {
            "routeeContactId": message,
            "error": "error occured",
            "details": [str(p) for p in problems],
        },
        status_code=status,
        headers=headers,
    )
