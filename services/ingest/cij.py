"""Customer Insights - Journeys dialect (seed 001), under
`/api/v1.0/orgs/{orgId}/pushdeviceregistration/`.

The `ApiToken` in each body authenticates against the org (= the account). As the seed
says, a request with an invalid API token stores no history, to keep it from being a
denial-of-service lever: it is answered 202 like any other (with request ids when tracked)
and nothing is published, so its status stays Pending. The status endpoint, which only
reads, answers 400 `ApiTokenNotValid` instead. A valid publishable key on a `MobileAppId` it
does not name refuses the whole request, 403 in ASP.NET's problem shape.

A 400 is ASP.NET's validation problem shape, `{"type", "title", "status", "errors":
{field: [messages]}}`, with `[i].Field` for batch items. A token the resolver would refuse
is a 400 whose message starts with the reason the registration would fail with
(`DeviceTokenTooLong`, `FailedToStoreDevice`).
"""

from __future__ import annotations

import json
import logging
import re
from http import HTTPStatus
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, TypeAdapter, model_validator

from services.core.events import Callback
from services.core.fields import Platform
from services.core.providers.base import TokenProblem
from services.ingest.auth import KeyHolder, caller, permit, tenants_of
from services.ingest.bodies import Body, NonBlank, TokenText, documented, error_responses, parse
from services.ingest.callbacks import signature
from services.ingest.commands import Command, cleanup, new_request_id, register
from services.ingest.refusals import Dialect, Invalid, Problem, Refusal
from services.ingest.registrations import registrations_of

log = logging.getLogger(__name__)


class ValidationProblem(BaseModel):
    """ASP.NET's validation problem: messages by field (`$` for the whole body)."""

    type: str
    title: str
    status: int
    errors: dict[str, list[str]]


router = APIRouter(
    prefix="/api/v1.0/orgs/{org_id}/pushdeviceregistration",
    tags=["CIJ"],
    responses=error_responses(ValidationProblem, (400, 403, 429)),
)

MAX_BATCH = 100
_MAX_URL = 2048


class Registration(Body):
    """One device registration; exactly one of the two device tokens."""

    mobile_app_id: Annotated[NonBlank, Field(alias="MobileAppId")]
    user_id: Annotated[NonBlank, Field(alias="UserId")]
    api_token: Annotated[NonBlank, Field(alias="ApiToken")]
    apns_device_token: Annotated[TokenText | None, Field(alias="ApnsDeviceToken")] = None
    fcm_device_token: Annotated[TokenText | None, Field(alias="FcmDeviceToken")] = None

    @model_validator(mode="after")
    def _one_token(self) -> Registration:
        if (self.apns_device_token is None) == (self.fcm_device_token is None):
            raise ValueError("give exactly one of ApnsDeviceToken and FcmDeviceToken")
        return self

    @property
    def device(self) -> tuple[Platform, str]:
        """The platform and token: an APNs token is an iOS device, an FCM token Android."""
        if self.apns_device_token is not None:
            return "ios", self.apns_device_token
        assert self.fcm_device_token is not None
        return "android", self.fcm_device_token


class Cleanup(Body):
    """Forget a user's devices under the app, or only the one with `DeviceToken`."""

    mobile_app_id: Annotated[NonBlank, Field(alias="MobileAppId")]
    api_token: Annotated[NonBlank, Field(alias="ApiToken")]
    user_id: Annotated[NonBlank, Field(alias="UserId")]
    device_token: Annotated[TokenText | None, Field(alias="DeviceToken")] = None


class StatusQuery(Body):
    """Registration request ids to look up, in the order to answer them."""

    registration_request_ids: Annotated[
        list[NonBlank], Field(alias="RegistrationRequestIds", min_length=1, max_length=MAX_BATCH)
    ]
    mobile_app_id: Annotated[NonBlank, Field(alias="MobileAppId")]
    api_token: Annotated[NonBlank, Field(alias="ApiToken")]


_REGISTRATIONS = TypeAdapter(
    Annotated[list[Registration], Field(min_length=1, max_length=MAX_BATCH)]
)
_CLEANUPS = TypeAdapter(Annotated[list[Cleanup], Field(min_length=1, max_length=MAX_BATCH)])


@router.post(
    "/devices", status_code=202, openapi_extra=documented(Registration), response_class=Response
)
async def register_device(org_id: str, request: Request) -> Response:
    """Register one device; 202 with a RegistrationRequestId when tracked."""
    return await _register(org_id, request, batch=False)


@router.post(
    "/devices/batch",
    status_code=202,
    openapi_extra=documented(list[Registration]),
    response_class=Response,
)
async def register_devices(org_id: str, request: Request) -> Response:
    """Register 1 to 100 devices; 202 with their RegistrationRequestIds in order when
    tracked."""
    return await _register(org_id, request, batch=True)


@router.post("/devices/status/", openapi_extra=documented(StatusQuery))
@router.post("/devices/status", include_in_schema=False)
async def registration_status(org_id: str, request: Request) -> Response:
    """Status of tracked registrations: Pending, Success or Failed with a FailureReason."""
    query = parse(StatusQuery, await request.body())
    holder = await _holder(request, org_id, query.api_token, {})
    if holder is None:
        raise Invalid([Problem("ApiToken", "ApiTokenNotValid")])
    app = await tenants_of(request).app(holder.account, query.mobile_app_id)
    if app is None:
        raise Invalid([Problem("MobileAppId", "no such mobile app in this org")])
    permit(holder, app.id)
    statuses = await registrations_of(request).statuses(app, query.registration_request_ids)
    return JSONResponse([{"Status": s.status, "FailureReason": s.failure_reason} for s in statuses])


@router.post(
    "/devices/cleanup", status_code=202, openapi_extra=documented(Cleanup), response_class=Response
)
async def cleanup_device(org_id: str, request: Request) -> Response:
    """Forget a user's devices (or one of them) under the app."""
    return await _cleanup(org_id, request, batch=False)


@router.post(
    "/devices/cleanup/batch",
    status_code=202,
    openapi_extra=documented(Cleanup | list[Cleanup]),
    response_class=Response,
)
async def cleanup_devices(org_id: str, request: Request) -> Response:
    """Cleanup of 1 to 100 items; a single object is accepted too, as the seed shows one."""
    return await _cleanup(org_id, request, batch=True)


async def _register(org_id: str, request: Request, *, batch: bool) -> Response:
    tenants = tenants_of(request)
    registrations = registrations_of(request)
    raw = await request.body()
    callback_url, callback_headers = _callback(request)
    items = parse(_REGISTRATIONS, raw) if batch else [parse(Registration, raw)]
    track = request.headers.get("x-ms-track-registration", "").strip().lower() == "true"
    commands: list[Command] = []
    ids: list[str] = []
    problems: list[Problem] = []
    holders: dict[str, KeyHolder | None] = {}
    for index, item in enumerate(items):
        request_id = new_request_id()
        ids.append(request_id)
        holder = await _holder(request, org_id, item.api_token, holders)
        if holder is None:
            continue  # the seed's rule: an invalid API token leaves no trace
        where = f"[{index}]." if batch else ""
        app = await tenants.app(holder.account, item.mobile_app_id)
        if app is None:
            problems.append(Problem(f"{where}MobileAppId", "no such mobile app in this org"))
            continue
        permit(holder, app.id)
        platform, token = item.device
        field = "ApnsDeviceToken" if platform == "ios" else "FcmDeviceToken"
        provider = await registrations.provider(app, platform, token, None)
        if provider is None:
            message = f"the mobile app has no push configuration for {platform}"
            problems.append(Problem(f"{where}{field}", message))
            continue
        if isinstance(provider, TokenProblem):
            message = f"{provider.reason}: {provider.message}"
            problems.append(Problem(f"{where}{field}", message))
            continue
        callback = None
        if callback_url is not None:
            callback = Callback(
                url=callback_url,
                headers=callback_headers,
                signature=signature(item.api_token, callback_url),
            )
        commands.append(
            register(
                app,
                source="cij",
                platform=platform,
                token=token,
                contact_id=item.user_id,
                track=track,
                callback=callback,
                request_id=request_id,
            )
        )
    if problems:
        raise Invalid(problems)
    _log_dropped(org_id, len(items) - len(commands))
    await registrations.publish(commands)
    if not track:
        return Response(status_code=202)
    answer = [{"RegistrationRequestId": i} for i in ids]
    return JSONResponse(answer if batch else answer[0], status_code=202)


async def _cleanup(org_id: str, request: Request, *, batch: bool) -> Response:
    tenants = tenants_of(request)
    raw = await request.body()
    as_list = batch and raw.lstrip().startswith(b"[")
    items = parse(_CLEANUPS, raw) if as_list else [parse(Cleanup, raw)]
    commands: list[Command] = []
    problems: list[Problem] = []
    holders: dict[str, KeyHolder | None] = {}
    for index, item in enumerate(items):
        holder = await _holder(request, org_id, item.api_token, holders)
        if holder is None:
            continue  # as for registrations: no trace of an invalid API token
        app = await tenants.app(holder.account, item.mobile_app_id)
        if app is None:
            where = f"[{index}]." if as_list else ""
            problems.append(Problem(f"{where}MobileAppId", "no such mobile app in this org"))
            continue
        permit(holder, app.id)
        commands.append(cleanup(app, contact_id=item.user_id, token=item.device_token))
    if problems:
        raise Invalid(problems)
    _log_dropped(org_id, len(items) - len(commands))
    await registrations_of(request).publish(commands)
    return Response(status_code=202)


async def _holder(
    request: Request, org_id: str, api_token: str, seen: dict[str, KeyHolder | None]
) -> KeyHolder | None:
    # A token authenticates against its own org only; `seen` spares a batch repeated lookups.
    if api_token not in seen:
        seen[api_token] = await caller(request, api_token, org_id=org_id)
    return seen[api_token]


def _log_dropped(org_id: str, count: int) -> None:
    # The caller is told nothing (the seed's rule); an operator asked why a status stays
    # Pending finds the answer here.
    if count:
        log.info(
            "dropped items with an invalid API token", extra={"org_id": org_id, "items": count}
        )


def _callback(request: Request) -> tuple[str | None, dict[str, str]]:
    # The seed names the header both x-ms-callback-url and x-ms-status-callback-url.
    url = (
        request.headers.get("x-ms-callback-url")
        or request.headers.get("x-ms-status-callback-url")
        or ""
    ).strip()
    if not url:
        return None, {}
    if len(url) > _MAX_URL:
        message = f"is too long: {len(url)} characters, at most {_MAX_URL}"
        raise Invalid([Problem("x-ms-callback-url", message)])
    # The scheme is case-insensitive (RFC 3986); the URL is kept as given, since the
    # Signature is computed over exactly the caller's text.
    try:
        parts = urlsplit(url)
        usable = parts.scheme.lower() in ("https", "http") and bool(parts.hostname)
    except ValueError:  # a malformed IPv6 host
        usable = False
    if not usable:
        raise Invalid([Problem("x-ms-callback-url", "must be an http(s) URL")])
    raw = request.headers.get("x-ms-callback-url-headers", "").strip()
    if not raw:
        return url, {}
    try:
        headers = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise Invalid([Problem("x-ms-callback-url-headers", "is not valid JSON")]) from exc
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        message = "must be a JSON object of string to string"
        raise Invalid([Problem("x-ms-callback-url-headers", message)])
    return url, _http_headers(headers)


# RFC 9110 section 5.1: a field name is a token; section 5.5: a value is visible characters
# with spaces or tabs between them, never CR, LF or NUL. Values must be ASCII too, as the
# webhook's HTTP client sends them. Anything else would only fail the webhook later.
_FIELD_NAME = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(r"([\x21-\x7e]+([ \t]+[\x21-\x7e]+)*)?")


def _http_headers(headers: dict[str, str]) -> dict[str, str]:
    problems = []
    for name, value in headers.items():
        if not _FIELD_NAME.fullmatch(name):
            problems.append(
                f"{name!r} is not an HTTP header name (letters, digits, !#$%&'*+-.^_`|~)"
            )
        elif not _FIELD_VALUE.fullmatch(value.strip(" \t")):
            problems.append(f"the value of {name!r} must be printable ASCII, without line breaks")
    if problems:
        raise Invalid([Problem("x-ms-callback-url-headers", problem) for problem in problems])
    # Spaces and tabs around a value are not part of it (RFC 9110 section 5.5).
    return {name: value.strip(" \t") for name, value in headers.items()}


def _refused(path: str, refusal: Refusal) -> JSONResponse:
    # Input that failed validation is ASP.NET's validation problem; a request refused
    # whole (too large, overloaded, no such route) its problem for that status.
    if refusal.problems:
        errors: dict[str, list[str]] = {}
        for problem in refusal.problems:
            errors.setdefault(problem.field or "$", []).append(_reason(problem))
        section, title = "15.5.1", "One or more validation errors occurred."
    else:
        errors = {"$": [refusal.message]}
        section = _SECTIONS.get(refusal.status, "15")
        title = HTTPStatus(refusal.status).phrase
    return JSONResponse(
        {
            "type": f"https://tools.ietf.org/html/rfc9110#section-{section}",
            "title": title,
            "status": refusal.status,
            "errors": errors,
        },
        status_code=refusal.status,
    )


# RFC 9110's section of each status Pushline refuses with, as ASP.NET links them.
_SECTIONS = {403: "15.5.4", 413: "15.5.14", 503: "15.6.4"}


def _reason(problem: Problem) -> str:
    if problem.field.endswith("DeviceToken") and problem.message.startswith("is too long"):
        return f"DeviceTokenTooLong: the token {problem.message}"
    return problem.message


DIALECT = Dialect(("/api/v1.0/orgs/",), _refused)
