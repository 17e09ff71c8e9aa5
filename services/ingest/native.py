"""The native API, `/v1/...`: register, batch-register and clean up devices, read a
registration's status; send notifications, read their state, report interactions, ask
how reachable a contact is. Bearer API key; errors are RFC 9457 problem+json.

Every registration is tracked: 202 returns its id, recorded Pending for the caller's
account, and `GET /v1/registrations/{id}` answers Pending until the feedback stage decides
it (404 for an id never issued to the account); `?wait=` answers with the decision itself.
Registering the same device again is accepted the same way and refreshes it (the feedback
stage upserts on app and token).
"""

from __future__ import annotations

import math
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field, model_validator

from services.core.devices import TokenProblem
from services.core.errors import IdempotencyConflictError
from services.core.events import (
    Audience,
    Content,
    InteractionType,
    Options,
    Platform,
    RegisterDevice,
    SendRequest,
    WebPushSubscription,
)
from services.core.store.accounts import Account
from services.core.store.apps import App
from services.ingest.bodies import (
    Body,
    Cellphone,
    Email,
    Invalid,
    NonBlank,
    Problem,
    TokenText,
    documented,
    parse,
)
from services.ingest.problems import invalid, problem, responses
from services.ingest.registry import (
    PENDING,
    Registry,
    Status,
    bearer,
    caller,
    cleanup,
    register,
    registry_of,
)
from services.ingest.sending import Sends, sends_of, shown

router = APIRouter(prefix="/v1", tags=["Native API"], responses=responses(400, 401, 404))

MAX_BATCH = 100
# Longest `?wait=` a registration may ask for: it holds a connection and an in-flight slot.
MAX_WAIT = 30


def _waiting(shape: type[Body]) -> dict[str, object]:
    """`openapi_extra` of a registration route: its body, and the `wait` parameter."""
    return {
        **documented(shape),
        "parameters": [
            {
                "name": "wait",
                "in": "query",
                "required": False,
                "description": "Seconds (0 to 30) to wait for the decision before answering: "
                "200 with the final status once decided, else 202 Pending.",
                "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT, "default": 0},
            }
        ],
    }


class Device(Body):
    """A device: a token, or for Web Push a subscription, and who it belongs to."""

    platform: Platform
    token: TokenText | None = None
    subscription: WebPushSubscription | None = None
    contact_id: NonBlank | None = None
    cellphone: Cellphone | None = None
    email: Email | None = None

    @model_validator(mode="after")
    def _one_address(self) -> Device:
        if (self.token is None) == (self.subscription is None):
            raise ValueError("give exactly one of token and subscription")
        if self.subscription is not None and self.platform != "web":
            raise ValueError("a subscription is only for the web platform")
        return self


class Devices(Body):
    """1 to 100 devices, registered together."""

    devices: Annotated[list[Device], Field(min_length=1, max_length=MAX_BATCH)]


class Cleanup(Body):
    """Forget one token, every device of a contact, or that contact's one token."""

    contact_id: NonBlank | None = None
    token: TokenText | None = None

    @model_validator(mode="after")
    def _something(self) -> Cleanup:
        if self.contact_id is None and self.token is None:
            raise ValueError("give a contact_id, a token or both")
        return self


@router.post(
    "/apps/{app_id}/devices",
    status_code=202,
    openapi_extra=_waiting(Device),
    responses={200: {"description": "Decided within `wait`: Success or Failed"}},
)
async def register_device(app_id: str, request: Request) -> Response:
    """Register (or refresh) one device; 202 with the registration id, or with `?wait=`
    200 and the final status once it is decided within that many seconds."""
    registry = registry_of(request)
    found = await _caller_app(registry, request, app_id)
    if isinstance(found, Response):
        return found
    wait = _wait(request)
    if isinstance(wait, Response):
        return wait
    try:
        device = parse(Device, await request.body())
    except Invalid as exc:
        return invalid(exc.problems)
    command = await _register(registry, found, device)
    if isinstance(command, Problem):
        return invalid([command])
    await registry.publish([command])
    location = {"Location": f"/v1/registrations/{command.request_id}"}
    if not wait:
        return JSONResponse(
            {"registration_id": command.request_id, "status": "Pending"},
            status_code=202,
            headers=location,
        )
    [status] = await registry.decided(found, [command.request_id], wait)
    return JSONResponse(
        _registration(command.request_id, status),
        status_code=202 if status.status == PENDING.status else 200,
        headers=location,
    )


@router.post(
    "/apps/{app_id}/devices:batch",
    status_code=202,
    openapi_extra=_waiting(Devices),
    responses={200: {"description": "All decided within `wait`: Success or Failed"}},
)
async def register_devices(app_id: str, request: Request) -> Response:
    """Register 1 to 100 devices; 202 with their registration ids in request order, or
    with `?wait=` 200 and their final statuses once all are decided within that time."""
    registry = registry_of(request)
    found = await _caller_app(registry, request, app_id)
    if isinstance(found, Response):
        return found
    wait = _wait(request)
    if isinstance(wait, Response):
        return wait
    try:
        batch = parse(Devices, await request.body())
    except Invalid as exc:
        return invalid(exc.problems)
    commands: list[RegisterDevice] = []
    problems: list[Problem] = []
    for index, device in enumerate(batch.devices):
        command = await _register(registry, found, device)
        if isinstance(command, Problem):
            problems.append(Problem(f"devices[{index}].{command.field}", command.message))
        else:
            commands.append(command)
    if problems:
        return invalid(problems)
    await registry.publish(commands)
    if not wait:
        ids = [{"registration_id": c.request_id, "status": "Pending"} for c in commands]
        return JSONResponse({"registrations": ids}, status_code=202)
    statuses = await registry.decided(found, [c.request_id for c in commands], wait)
    return JSONResponse(
        {
            "registrations": [
                _registration(c.request_id, s) for c, s in zip(commands, statuses, strict=True)
            ]
        },
        status_code=202 if any(s.status == PENDING.status for s in statuses) else 200,
    )


@router.post("/apps/{app_id}/devices:cleanup", status_code=202, openapi_extra=documented(Cleanup))
async def cleanup_devices(app_id: str, request: Request) -> Response:
    """Forget a token or a contact's devices; 202 with the request id."""
    registry = registry_of(request)
    found = await _caller_app(registry, request, app_id)
    if isinstance(found, Response):
        return found
    try:
        body = parse(Cleanup, await request.body())
    except Invalid as exc:
        return invalid(exc.problems)
    command = cleanup(found, contact_id=body.contact_id, token=body.token)
    await registry.publish([command])
    return JSONResponse({"request_id": command.request_id}, status_code=202)


@router.get("/registrations/{registration_id}")
async def registration_status(registration_id: str, request: Request) -> Response:
    """A registration's status: Pending, Success, or Failed with its reason."""
    registry = registry_of(request)
    account = await _caller(request)
    if isinstance(account, Response):
        return account
    status = await registry.status(account, registration_id)
    if status is None:
        return problem(404, f"registration {registration_id} not found")
    return JSONResponse(_registration(registration_id, status))


def _registration(registration_id: str, status: Status) -> dict[str, object]:
    return {
        "registration_id": registration_id,
        "status": status.status,
        "failure_reason": status.failure_reason,
    }


def _wait(request: Request) -> float | Response:
    """The `?wait=` seconds (0 without it), or the 400 to answer."""
    raw = request.query_params.get("wait")
    if raw is None:
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    # NaN fails both comparisons, so anything not a number in range is refused.
    if not 0 <= seconds <= MAX_WAIT:
        return invalid([Problem("wait", f"must be a number of seconds from 0 to {MAX_WAIT}")])
    return seconds


async def _caller(request: Request) -> Account | Response:
    """The account of the request's Bearer key, or the 401 to answer."""
    account = await caller(request, bearer(request))
    return problem(401, "missing or unknown API key") if account is None else account


async def _caller_app(registry: Registry, request: Request, app_id: str) -> App | Response:
    account = await _caller(request)
    if isinstance(account, Response):
        return account
    app = await registry.app(account, app_id)
    if app is None:
        return problem(404, f"app {app_id} not found")
    return app


async def _register(registry: Registry, app: App, device: Device) -> RegisterDevice | Problem:
    token = device.token if device.subscription is None else device.subscription.endpoint
    assert token is not None
    provider = await registry.provider(app, device.platform, token, device.subscription)
    if provider is None:
        field = "subscription" if device.subscription is not None else "platform"
        return Problem(field, f"the app has no provider configured for {device.platform}")
    if isinstance(provider, TokenProblem):
        field = "subscription" if device.subscription is not None else "token"
        return Problem(field, provider.message)
    return register(
        app,
        source="native",
        platform=device.platform,
        token=token,
        subscription=device.subscription,
        contact_id=device.contact_id,
        cellphone=device.cellphone,
        email=device.email,
        track=True,
    )


# Selector values per send request; larger audiences are addressed by contact lists
# published on Kafka in several requests, or by several HTTP calls.
MAX_SELECTOR = 10_000
Selector = Annotated[list[NonBlank], Field(max_length=MAX_SELECTOR)]


class Target(Body):
    """Who receives it: any mix of raw tokens, contact ids, cellphones and emails, or
    `all` (every active device of the app) alone.

    `platforms` narrows `all`, the contact ids, cellphones and emails (not the raw tokens)."""

    all: bool = False
    tokens: Annotated[list[TokenText], Field(max_length=MAX_SELECTOR, default_factory=list)]
    contact_ids: Annotated[Selector, Field(default_factory=list)]
    cellphones: Annotated[
        list[Cellphone],
        Field(max_length=MAX_SELECTOR, default_factory=list),
    ]
    emails: Annotated[
        list[Email],
        Field(max_length=MAX_SELECTOR, default_factory=list),
    ]
    platforms: Annotated[list[Platform], Field(default_factory=list)]

    @model_validator(mode="after")
    def _someone(self) -> Target:
        named = self.tokens or self.contact_ids or self.cellphones or self.emails
        if self.all and named:
            raise ValueError(
                "all addresses every device of the app: it takes no tokens, contact_ids, "
                "cellphones or emails (platforms narrows it)"
            )
        if not (self.all or named):
            raise ValueError("name at least one token, contact id, cellphone or email, or all")
        return self


class Notification(Body):
    """What the user sees."""

    title: Annotated[str, Field(max_length=1000)] = ""
    body: Annotated[str, Field(max_length=4000)] = ""
    image_url: Annotated[str, Field(max_length=2048)] | None = None

    @model_validator(mode="after")
    def _something(self) -> Notification:
        if not (self.title.strip() or self.body.strip()):
            raise ValueError("give a title, a body or both")
        return self


class SendOptions(Body):
    """How to deliver: time to live (seconds), priority, collapse key, send_to, dry run."""

    ttl: Annotated[int, Field(ge=0, le=2_419_200)] | None = None
    priority: Literal["normal", "high"] = "high"
    collapse_key: Annotated[str, Field(max_length=64)] | None = None
    send_to: Literal["all", "latest"] | None = None
    dry_run: bool = False


class NotificationRequest(Body):
    """`POST /v1/notifications`."""

    app_id: NonBlank
    to: Target
    notification: Notification
    data: Annotated[dict[str, str], Field(max_length=100, default_factory=dict)]
    options: SendOptions = SendOptions()


class InteractionEvent(Body):
    """`POST /v1/events`: what the user did with a notification on one device."""

    notification_id: NonBlank
    token: TokenText
    type: InteractionType


@router.post(
    "/notifications",
    status_code=202,
    openapi_extra=documented(NotificationRequest),
    responses=responses(422),
)
async def send_notification(request: Request) -> Response:
    """Send a notification; 202 with its id. A repeated `Idempotency-Key` (24 hours)
    with the same body answers the first request's id and sends nothing new; with another
    body, 422."""
    registry = registry_of(request)
    account = await _caller(request)
    if isinstance(account, Response):
        return account
    try:
        body = parse(NotificationRequest, await request.body())
    except Invalid as exc:
        return invalid(exc.problems)
    if body.to.all and body.options.send_to == "latest":
        # `latest` picks among a contact's devices; `all` names devices, not contacts.
        return invalid([Problem("options.send_to", "to.all addresses devices: not latest")])
    app = await registry.app(account, body.app_id)
    if app is None:
        return problem(404, f"app {body.app_id} not found")
    content = Content(
        title=body.notification.title,
        body=body.notification.body,
        image_url=body.notification.image_url,
    )
    refused = Sends.check(content, body.data, sorted(app.configured))
    if refused is not None:
        return invalid([Problem("notification", refused)])
    key = request.headers.get("idempotency-key")
    if key is not None and not 0 < len(key) <= 200:
        return invalid([Problem("Idempotency-Key", "must be 1 to 200 characters")])
    send = SendRequest(
        notification_id=str(uuid.uuid4()),
        account_id=account.id,
        app_id=app.id,
        to=Audience(
            all=body.to.all,
            tokens=body.to.tokens,
            contact_ids=body.to.contact_ids,
            cellphones=body.to.cellphones,
            emails=body.to.emails,
            platforms=body.to.platforms,
        ),
        notification=content,
        data=body.data,
        options=Options(**body.options.model_dump()),
    )
    try:
        notification_id = await sends_of(request).accept(send, key)
    except IdempotencyConflictError as exc:
        return problem(422, str(exc))
    return JSONResponse(
        {"id": notification_id},
        status_code=202,
        headers={"Location": f"/v1/notifications/{notification_id}"},
    )


@router.get("/notifications/{notification_id}")
async def notification_status(notification_id: str, request: Request) -> Response:
    """State (accepted, resolving, sending, done), counters and per-platform counts."""
    account = await _caller(request)
    if isinstance(account, Response):
        return account
    found = await sends_of(request).notification(account.id, notification_id)
    if found is None:
        return problem(404, f"notification {notification_id} not found")
    return JSONResponse(shown(found))


@router.post("/events", status_code=202, openapi_extra=documented(InteractionEvent))
async def report_interaction(request: Request) -> Response:
    """Report that a notification was delivered, opened, clicked or dismissed on a device
    it was sent to (404 for any other device)."""
    account = await _caller(request)
    if isinstance(account, Response):
        return account
    try:
        body = parse(InteractionEvent, await request.body())
    except Invalid as exc:
        return invalid(exc.problems)
    sends = sends_of(request)
    found = await sends.notification(account.id, body.notification_id)
    if found is None:
        return problem(404, f"notification {body.notification_id} not found")
    if not await sends.reached(found, body.token):
        return problem(404, f"notification {body.notification_id} was not sent to this device")
    await sends.report(found, body.token, body.type)
    return Response(status_code=202)


@router.get("/apps/{app_id}/contacts/{contact_id}")
async def contact_reachability(app_id: str, contact_id: str, request: Request) -> Response:
    """Per platform, the contact's active and invalid devices and the last invalidation."""
    registry = registry_of(request)
    found = await _caller_app(registry, request, app_id)
    if isinstance(found, Response):
        return found
    platforms = await sends_of(request).reachability(found.account_id, found.id, contact_id)
    return JSONResponse({"contact_id": contact_id, "platforms": platforms})
