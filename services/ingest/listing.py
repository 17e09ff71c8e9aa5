"""Listing and looking up what the native API holds for the caller: `GET /v1/apps`, an
app's devices (`GET /v1/apps/{app_id}/devices`, one by `GET` and `DELETE
/v1/apps/{app_id}/devices/{device_id}`), and `GET /v1/notifications`.

Every list is one page of at most `limit` items in a stable order, and `next_cursor`, when
there are more, names where the next page starts: the opaque base64url of the last item's
`_id`, so a page is one `_id` read from there (MongoDB walks its `_id` index). Everything
is read through the caller's account: another account's apps, devices and notifications
are not found, and a cursor is only ever a position inside the caller's own range.

A device is named by its id, the SHA-256 of its token (of the endpoint, for Web Push) in
hex: tokens can be long, hold `/` and `:`, and are never returned. Deleting one publishes
a cleanup of its token on `push.registrations`, so it is ordered with the device's other
registrations and leaves the contact directory the way every cleanup does; changing its
tags and language (`PATCH`) publishes an update there, for the same reason.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field
from pymongo.asynchronous.database import AsyncDatabase

from services.core.fields import MAX_TAGS, DeviceLanguage, Platform, TagKey, TagValue
from services.core.store.apps import App
from services.core.store.client import Document
from services.core.store.devices import DevicesRepository, app_devices_page, of_app
from services.core.store.notifications import STATES, NotificationsRepository
from services.ingest.admin import app_view
from services.ingest.auth import Caller, CallerApp, RegistrarApp, tenants_of
from services.ingest.bodies import Body, documented, parse
from services.ingest.commands import cleanup, update
from services.ingest.problems import responses
from services.ingest.refusals import Invalid, Problem, Refusal
from services.ingest.registrations import registrations_of
from services.ingest.sending import shown

router = APIRouter(prefix="/v1", tags=["Native API"], responses=responses(400, 401, 403, 404, 429))

# Items per page unless `limit` says otherwise, and the most it may ask for: a page is held
# whole in memory, by the store and here.
PAGE = 50
MAX_PAGE = 200
# Why a cursor is refused: decoded or not, it is not a position in this list.
NOT_A_CURSOR = "not a cursor a page of this list gave"
# A device id: the token's SHA-256, hex.
_DEVICE_ID = re.compile(r"[0-9a-f]{64}")
# A listing's tag filter: `key` (the tag is present) or `key:value`.
_TAG_FILTER = re.compile(r"(?P<key>[a-z0-9_-]{1,64})(?::(?P<value>.{1,256}))?", re.DOTALL)

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Items per page (1 to 200).")]
DeviceId = Annotated[
    str,
    Path(description="The device's id: its token's SHA-256 (of the endpoint, for Web Push), hex."),
]
Cursor = Annotated[
    str | None, Query(description="The `next_cursor` of the previous page; none: the first.")
]


class Listings:
    """The store reads behind the listings, and a device's token for its deletion."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._db = db
        self._devices = DevicesRepository(db)
        self._notifications = NotificationsRepository(db)

    async def devices(
        self,
        account_id: str,
        app_id: str,
        *,
        after: str | None,
        limit: int,
        contact_id: str | None,
        platforms: Sequence[str],
        statuses: Sequence[str],
        tags: dict[str, str | None],
    ) -> list[Document]:
        """One page of the app's devices (see `app_devices_page`)."""
        return await app_devices_page(
            self._db,
            app_id,
            account_id,
            after=after,
            limit=limit,
            contact_id=contact_id,
            platforms=platforms,
            statuses=statuses,
            tags=tags,
        )

    async def device(self, account_id: str, app_id: str, token_hash: str) -> Document | None:
        """The account's device with this token hash under the app, or None."""
        found = await self._devices.find(app_id, token_hash)
        if found is None or found.get("account_id") != account_id:
            return None
        return found

    async def notifications(
        self,
        account_id: str,
        *,
        app_id: str | None,
        state: str | None,
        after: str | None,
        limit: int,
    ) -> list[Document]:
        """One page of the account's notifications (see `NotificationsRepository.page`)."""
        return await self._notifications.page(
            account_id, app_id=app_id, state=state, after=after, limit=limit
        )


def listings_of(request: Request) -> Listings:
    """The Listings the ingest's lifespan built."""
    found = request.app.state.listings
    assert isinstance(found, Listings)
    return found


def encode_cursor(last_id: str) -> str:
    """The cursor of the page after the item with this `_id`."""
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    """The `_id` a cursor names (None for none). Raises Invalid for one no page gave."""
    if cursor is None:
        return None
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        after = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise Invalid([Problem("cursor", NOT_A_CURSOR)]) from exc
    if not after:
        raise Invalid([Problem("cursor", NOT_A_CURSOR)])
    return after


def _page(name: str, items: list[dict[str, object]], ids: list[str], limit: int) -> Response:
    """A page: its first `limit` items, and the cursor after them when one more was read."""
    more = len(items) > limit
    return JSONResponse(
        {name: items[:limit], "next_cursor": encode_cursor(ids[limit - 1]) if more else None}
    )


def device_view(device: Document) -> dict[str, object]:
    """A device as the native API shows it: named by its token's hash, never the token."""

    def at(name: str) -> str | None:
        value = device.get(name)
        return value.isoformat() if value is not None else None

    return {
        "id": device["token_hash"],
        "platform": device.get("platform"),
        "provider": device.get("provider"),
        "status": device.get("status"),
        "contact_id": device.get("contact_id"),
        "cellphone": device.get("cellphone"),
        "email": device.get("email"),
        "invalid_reason": device.get("invalid_reason"),
        "invalid_at": at("invalid_at"),
        "registered_at": at("registered_at"),
        "last_success_at": at("last_success_at"),
        "last_active_at": at("last_active_at"),
        "tags": device.get("tags") or {},
        "language": device.get("language"),
        "created": at("created"),
        "updated": at("updated"),
    }


@router.get("/apps")
async def list_apps(
    account: Caller, request: Request, limit: Limit = PAGE, cursor: Cursor = None
) -> Response:
    """The caller's apps, in id order, without secrets; `next_cursor` when there are more."""
    found = await tenants_of(request).apps.page(
        account.id, after=decode_cursor(cursor), limit=limit + 1
    )
    return _page("apps", [app_view(app) for app in found], [app.id for app in found], limit)


@router.get("/apps/{app_id}/devices")
async def list_devices(
    app: CallerApp,
    request: Request,
    contact_id: Annotated[str | None, Query(description="Only this contact's devices.")] = None,
    platform: Annotated[list[Platform] | None, Query(description="Only these platforms.")] = None,
    status: Annotated[
        list[Literal["active", "invalid"]] | None, Query(description="Only these statuses.")
    ] = None,
    tag: Annotated[
        list[str] | None,
        Query(
            description="Only devices with this tag: `key` (present) or `key:value` (equal, "
            "as a string or a number); repeated, all must hold."
        ),
    ] = None,
    limit: Limit = PAGE,
    cursor: Cursor = None,
) -> Response:
    """The app's devices in id order (of a contact, on platforms, in statuses, with tags,
    when asked); `next_cursor` when there are more. A device's id is its token's SHA-256."""
    after = decode_cursor(cursor)
    if after is not None and not of_app(app.id, after):
        raise Invalid([Problem("cursor", NOT_A_CURSOR)])
    found = await listings_of(request).devices(
        app.account_id,
        app.id,
        after=after,
        limit=limit + 1,
        contact_id=contact_id,
        platforms=platform or (),
        statuses=status or (),
        tags=_tag_filters(tag or []),
    )
    return _page("devices", [device_view(d) for d in found], [d["_id"] for d in found], limit)


def _tag_filters(raw: list[str]) -> dict[str, str | None]:
    """The `tag` query parameters as key -> value (None: present). Raises Invalid for one
    that is not `key` or `key:value`, or for more than MAX_TAGS."""
    if len(raw) > MAX_TAGS:
        raise Invalid([Problem("tag", f"at most {MAX_TAGS} tag filters")])
    found: dict[str, str | None] = {}
    for each in raw:
        match = _TAG_FILTER.fullmatch(each)
        if match is None:
            raise Invalid(
                [Problem("tag", "must be key or key:value (keys: 1 to 64 of a-z, 0-9, _, -)")]
            )
        found[match["key"]] = match["value"]
    return found


async def _device(app: App, request: Request, device_id: str) -> Document:
    """The app's device named by its id; 404 for any other id."""
    found = None
    if _DEVICE_ID.fullmatch(device_id):
        found = await listings_of(request).device(app.account_id, app.id, device_id)
    if found is None:
        raise Refusal(404, f"device {device_id} not found")
    return found


@router.get("/apps/{app_id}/devices/{device_id}")
async def get_device(app: CallerApp, device_id: DeviceId, request: Request) -> Response:
    """One device of the app, by its id (its token's SHA-256, hex), in any status."""
    return JSONResponse(device_view(await _device(app, request, device_id)))


@router.delete("/apps/{app_id}/devices/{device_id}", status_code=202)
async def delete_device(app: RegistrarApp, device_id: DeviceId, request: Request) -> Response:
    """Forget one device of the app, by its id: 202 with the cleanup's request id. The
    deletion is applied in order with the device's registrations, shortly after."""
    found = await _device(app, request, device_id)
    command = cleanup(app, contact_id=None, token=found["token"])
    await registrations_of(request).publish([command])
    return JSONResponse({"request_id": command.request_id}, status_code=202)


class DevicePatch(Body):
    """A JSON merge patch (RFC 7386) of a device's tags and language: a tag set to null
    is removed, `"tags": null` removes them all, `"language": null` removes it; what the
    patch does not name stays."""

    tags: Annotated[dict[TagKey, TagValue | None] | None, Field(max_length=MAX_TAGS)] = None
    language: DeviceLanguage | None = None


@router.patch(
    "/apps/{app_id}/devices/{device_id}", status_code=202, openapi_extra=documented(DevicePatch)
)
async def patch_device(app: CallerApp, device_id: DeviceId, request: Request) -> Response:
    """Change one device's tags and language, by its id: 202 with the update's request id.
    The change is applied in order with the device's registrations, shortly after."""
    patch = parse(DevicePatch, await request.body())
    given = patch.model_fields_set
    if not given & {"tags", "language"}:
        raise Invalid([Problem("", "give tags, language or both")])
    found = await _device(app, request, device_id)
    held: dict[str, object] = found.get("tags") or {}
    if "tags" in given and patch.tags is None:
        tags, removed = {}, sorted(held)
    else:
        patched = patch.tags or {}
        tags = {key: value for key, value in patched.items() if value is not None}
        removed = sorted(key for key, value in patched.items() if value is None)
    if len({*held, *tags} - set(removed)) > MAX_TAGS:
        raise Invalid([Problem("tags", f"a device holds at most {MAX_TAGS} tags")])
    command = update(
        app,
        token=found["token"],
        tags=tags,
        removed_tags=removed,
        language=patch.language,
        remove_language="language" in given and patch.language is None,
    )
    await registrations_of(request).publish([command])
    return JSONResponse({"request_id": command.request_id}, status_code=202)


@router.get("/notifications")
async def list_notifications(
    account: Caller,
    request: Request,
    app_id: Annotated[str | None, Query(description="Only this app's notifications.")] = None,
    state: Annotated[
        str | None, Query(description=f"Only those in this state: {', '.join(STATES)}.")
    ] = None,
    limit: Limit = PAGE,
    cursor: Cursor = None,
) -> Response:
    """The caller's notifications, each as its status call shows it (with its content and
    audience), in id order; `next_cursor` when there are more."""
    if state is not None and state not in STATES:
        raise Invalid([Problem("state", f"must be one of {', '.join(STATES)}")])
    if app_id is not None and await tenants_of(request).app(account, app_id) is None:
        raise Refusal(404, f"app {app_id} not found")
    found = await listings_of(request).notifications(
        account.id, app_id=app_id, state=state, after=decode_cursor(cursor), limit=limit + 1
    )
    return _page("notifications", [shown(n) for n in found], [n["_id"] for n in found], limit)
