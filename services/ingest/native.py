"""The native API's devices, `/v1/...`: register, batch-register and clean up devices,
read a registration's status, ask how reachable a contact is (sends are in
`services.ingest.notifications`). Bearer API key; errors are RFC 9457 problem+json.

Every registration is tracked: 202 returns its id, recorded Pending for the caller's
account, and `GET /v1/registrations/{id}` answers Pending until the feedback stage decides
it (404 for an id never issued to the account); `?wait=` answers with the decision itself.
Registering the same device again is accepted the same way and refreshes it (the feedback
stage upserts on app and token).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field, model_validator

from services.core.events import (
    RegisterDevice,
    WebPushSubscription,
)
from services.core.fields import DeviceLanguage, Platform, Tags
from services.core.providers.base import TokenProblem
from services.core.store.apps import App
from services.core.store.registrations import PENDING, Status
from services.ingest.auth import Caller, CallerApp, RegistrarApp
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
from services.ingest.sending import sends_of

router = APIRouter(prefix="/v1", tags=["Native API"], responses=responses(400, 401, 403, 404, 429))

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
    """A device: a token, or for Web Push a subscription, and who it belongs to; its tags
    (at most 50: keys of 1 to 64 of a-z, 0-9, `_`, `-`; values strings of at most 256
    characters, or numbers) and its language (BCP 47, as "pt-BR"), which replace those it
    had when given."""

    platform: Platform
    token: TokenText | None = None
    subscription: WebPushSubscription | None = None
    contact_id: NonBlank | None = None
    cellphone: Cellphone | None = None
    email: Email | None = None
    tags: Tags | None = None
    language: DeviceLanguage | None = None

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
async def register_device(app: RegistrarApp, request: Request) -> Response:
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
async def register_devices(app: RegistrarApp, request: Request) -> Response:
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
async def cleanup_devices(app: RegistrarApp, request: Request) -> Response:
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
        tags=device.tags,
        language=device.language,
    )


@router.get("/apps/{app_id}/contacts/{contact_id}")
async def contact_reachability(app: CallerApp, contact_id: str, request: Request) -> Response:
    """Per platform, the contact's active and invalid devices and the last invalidation."""
    platforms = await sends_of(request).reachability(app.account_id, app.id, contact_id)
    return JSONResponse({"contact_id": contact_id, "platforms": platforms})
