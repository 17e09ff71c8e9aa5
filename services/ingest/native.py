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
from collections.abc import Sequence
from typing import Annotated, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field, model_validator

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
from services.core.providers.base import TokenProblem
from services.core.store.apps import App
from services.core.store.registrations import PENDING, Status
from services.ingest.auth import Caller, CallerApp, tenants_of
from services.ingest.bodies import (
    Body,
    Cellphone,
    Email,
    NonBlank,
    TokenText,
    documented,
    parse,
)
from services.ingest.commands import cleanup, register
from services.ingest.problems import responses
from services.ingest.refusals import Invalid, Problem, Refusal
from services.ingest.registrations import Registrations, registrations_of
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
    def _contact_or_token(self) -> Cleanup:
        if self.contact_id is None and self.token is None:
            raise ValueError("give a contact_id, a token or both")
        return self


@router.post(
    "/apps/{app_id}/devices",
    status_code=202,
    openapi_extra=_waiting(Device),
    responses={200: {"description": "Decided within `wait`: Success or Failed"}},
)
async def register_device(app: CallerApp, request: Request) -> Response:
    """Register (or refresh) one device; 202 with the registration id, or with `?wait=`
    200 and the final status once it is decided within that many seconds."""
    wait = _wait(request)
    device = parse(Device, await request.body())
    [command] = await _publish(request, app, [device], batch=False)
    location = {"Location": f"/v1/registrations/{command.request_id}"}
    if not wait:
        return JSONResponse(
            {"registration_id": command.request_id, "status": "Pending"},
            status_code=202,
            headers=location,
        )
    [status] = await registrations_of(request).decided(app, [command.request_id], wait)
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
async def register_devices(app: CallerApp, request: Request) -> Response:
    """Register 1 to 100 devices; 202 with their registration ids in request order, or
    with `?wait=` 200 and their final statuses once all are decided within that time."""
    wait = _wait(request)
    batch = parse(Devices, await request.body())
    commands = await _publish(request, app, batch.devices, batch=True)
    if not wait:
        ids = [{"registration_id": c.request_id, "status": "Pending"} for c in commands]
        return JSONResponse({"registrations": ids}, status_code=202)
    statuses = await registrations_of(request).decided(app, [c.request_id for c in commands], wait)
    return JSONResponse(
        {
            "registrations": [
                _registration(c.request_id, s) for c, s in zip(commands, statuses, strict=True)
            ]
        },
        status_code=202 if any(s.status == PENDING.status for s in statuses) else 200,
    )


@router.post("/apps/{app_id}/devices:cleanup", status_code=202, openapi_extra=documented(Cleanup))
async def cleanup_devices(app: CallerApp, request: Request) -> Response:
    """Forget a token or a contact's devices; 202 with the request id."""
    body = parse(Cleanup, await request.body())
    command = cleanup(app, contact_id=body.contact_id, token=body.token)
    await registrations_of(request).publish([command])
    return JSONResponse({"request_id": command.request_id}, status_code=202)


@router.get("/registrations/{registration_id}")
async def registration_status(registration_id: str, account: Caller, request: Request) -> Response:
    """A registration's status: Pending, Success, or Failed with its reason."""
    status = await registrations_of(request).status(account.id, registration_id)
    if status is None:
        raise Refusal(404, f"registration {registration_id} not found")
    return JSONResponse(_registration(registration_id, status))


def _registration(registration_id: str, status: Status) -> dict[str, object]:
    return {
        "registration_id": registration_id,
        "status": status.status,
        "failure_reason": status.failure_reason,
    }


def _wait(request: Request) -> float:
    """The `?wait=` seconds (0 without it). Raises Invalid for anything else."""
    raw = request.query_params.get("wait")
    if raw is None:
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    # NaN fails both comparisons, so anything not a number in range is refused.
    if not 0 <= seconds <= MAX_WAIT:
        raise Invalid([Problem("wait", f"must be a number of seconds from 0 to {MAX_WAIT}")])
    return seconds


async def _publish(
    request: Request, app: App, devices: Sequence[Device], *, batch: bool
) -> list[RegisterDevice]:
    """Publish a registration of each device, once all are acceptable. Raises Invalid
    naming every device that is not (as `devices[i]` in a batch)."""
    registrations = registrations_of(request)
    commands: list[RegisterDevice] = []
    problems: list[Problem] = []
    for index, device in enumerate(devices):
        command = await _register(registrations, app, device)
        if isinstance(command, RegisterDevice):
            commands.append(command)
        else:
            where = f"devices[{index}]." if batch else ""
            problems.append(Problem(f"{where}{command.field}", command.message))
    if problems:
        raise Invalid(problems)
    await registrations.publish(commands)
    return commands


async def _register(
    registrations: Registrations, app: App, device: Device
) -> RegisterDevice | Problem:
    token = device.token if device.subscription is None else device.subscription.endpoint
    assert token is not None
    provider = await registrations.provider(app, device.platform, token, device.subscription)
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
    def _all_or_named(self) -> Target:
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
    def _title_or_body(self) -> Notification:
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
async def send_notification(account: Caller, request: Request) -> Response:
    """Send a notification; 202 with its id. A repeated `Idempotency-Key` (24 hours)
    with the same body answers the first request's id and sends nothing new; with another
    body, 422."""
    body = parse(NotificationRequest, await request.body())
    if body.to.all and body.options.send_to == "latest":
        # `latest` picks among a contact's devices; `all` names devices, not contacts.
        raise Invalid([Problem("options.send_to", "to.all addresses devices: not latest")])
    app = await tenants_of(request).app(account, body.app_id)
    if app is None:
        raise Refusal(404, f"app {body.app_id} not found")
    content = Content(
        title=body.notification.title,
        body=body.notification.body,
        image_url=body.notification.image_url,
    )
    refused = Sends.check(content, body.data, sorted(app.configured))
    if refused is not None:
        raise Invalid([Problem("notification", refused)])
    key = request.headers.get("idempotency-key")
    if key is not None and not 0 < len(key) <= 200:
        raise Invalid([Problem("Idempotency-Key", "must be 1 to 200 characters")])
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
        raise Refusal(422, str(exc)) from exc
    return JSONResponse(
        {"id": notification_id},
        status_code=202,
        headers={"Location": f"/v1/notifications/{notification_id}"},
    )


@router.get("/notifications/{notification_id}")
async def notification_status(notification_id: str, account: Caller, request: Request) -> Response:
    """State (accepted, resolving, sending, done), counters and per-platform counts."""
    found = await sends_of(request).notification(account.id, notification_id)
    if found is None:
        raise Refusal(404, f"notification {notification_id} not found")
    return JSONResponse(shown(found))


@router.post("/events", status_code=202, openapi_extra=documented(InteractionEvent))
async def report_interaction(account: Caller, request: Request) -> Response:
    """Report that a notification was delivered, opened, clicked or dismissed on a device
    it was sent to (404 for any other device)."""
    body = parse(InteractionEvent, await request.body())
    sends = sends_of(request)
    found = await sends.notification(account.id, body.notification_id)
    if found is None:
        raise Refusal(404, f"notification {body.notification_id} not found")
    if not await sends.reached(found, body.token):
        raise Refusal(404, f"notification {body.notification_id} was not sent to this device")
    await sends.report(found, body.token, body.type)
    return Response(status_code=202)


@router.get("/apps/{app_id}/contacts/{contact_id}")
async def contact_reachability(app: CallerApp, contact_id: str, request: Request) -> Response:
    """Per platform, the contact's active and invalid devices and the last invalidation."""
    platforms = await sends_of(request).reachability(app.account_id, app.id, contact_id)
    return JSONResponse({"contact_id": contact_id, "platforms": platforms})
