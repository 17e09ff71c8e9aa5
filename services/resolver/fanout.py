"""Fan-out: expand a send request into one job per targeted active device.

Devices are read by `_id` and streamed in batches, so the audience is never held in
memory; what is held is the size of the request itself (and, per chunk of selector
values, their devices' ids). Raw tokens are device `_id`s (under the request's app, or
under each app of the account); contact ids, cellphones and emails are looked up in the
contact directory (`services.core.store.directory`), then their devices read by `_id`
and checked. A device reached by several selectors is produced once: each selector skips
the devices an earlier one already reached (raw tokens, then contact ids, cellphones,
emails), which needs only the request's own lists, not a set of every device seen.

`to.all` reads the app's devices as one `_id` range, in `_id` order (`app_devices`), so a
fan-out can resume after the last device it produced; `to.filters` reads them the same way
and keeps those its compiled test takes (`services.resolver.segments`). So do selectors
with more values than one query takes (contact lists of a campaign), matched in the
resolver.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from pymongo.asynchronous.database import AsyncDatabase

from services.core.events import PushJob, SendRequest, SendTo
from services.core.store.apps import app_settings
from services.core.store.client import Document
from services.core.store.devices import (
    Delivery,
    account_apps,
    active_app_devices,
    device_id,
    with_tokens,
)
from services.core.store.directory import Field, devices_carrying
from services.core.tokens import hash_token
from services.resolver.segments import FIELDS, compile_filter

# Selector values per directory read: large enough to amortise round trips, small enough
# for `$in`.
CHUNK = 500

_PROJECTION = {
    "app_id": 1,
    "account_id": 1,
    "platform": 1,
    "provider": 1,
    "token": 1,
    "token_hash": 1,
    "subscription": 1,
    "contact_id": 1,
    "cellphone": 1,
    "email": 1,
    "status": 1,
    "registered_at": 1,
    "language": 1,
}


@dataclass(frozen=True)
class _Selector:
    field: Field
    values: frozenset[str]


def _many(selectors: list[_Selector]) -> bool:
    """Whether the selectors hold more values than one query takes: then one pass over
    the app's devices beats reading their devices by `_id` (a transactional send, or a
    short list, stays on point reads)."""
    return sum(len(selector.values) for selector in selectors) > CHUNK


def _chunks(values: Iterable[str]) -> Iterator[list[str]]:
    ordered = sorted(values)
    for start in range(0, len(ordered), CHUNK):
        yield ordered[start : start + CHUNK]


async def send_to_of(request: SendRequest, db: AsyncDatabase[Document]) -> SendTo:
    """The request's `send_to`, else its app's setting, else `all`."""
    if request.options.send_to is not None:
        return request.options.send_to
    if request.app_id is None:
        return "all"
    return (await app_settings(db, request.app_id)).send_to


async def targeted_devices(
    request: SendRequest, db: AsyncDatabase[Document], send_to: SendTo
) -> AsyncIterator[Document]:
    """Each active device the request reaches, once.

    Raw tokens match the account's registered devices of any platform; the association
    selectors (contact ids, cellphones, emails) honour `to.platforms` and `send_to`
    (`latest`: per selector value, the most recently registered active device).
    """
    hashes = frozenset(hash_token(token) for token in request.to.tokens)
    selectors = [
        _Selector("contact_id", frozenset(request.to.contact_ids)),
        _Selector("cellphone", frozenset(request.to.cellphones)),
        _Selector("email", frozenset(request.to.emails)),
    ]
    platforms = frozenset(request.to.platforms)

    if hashes:
        async for device in with_tokens(db, await _token_apps(request, db), hashes, _PROJECTION):
            if device.get("account_id") == request.account_id and device.get("status") == "active":
                yield device

    if request.app_id is not None and send_to == "all" and _many(selectors):
        # One pass over the app's devices, matched here: cheaper on the local store than
        # reading a long list's devices by `_id`, a few at a time.
        async for device in app_devices(request, db):
            if device["token_hash"] not in hashes and any(
                device.get(s.field) in s.values for s in selectors
            ):
                yield device
        return

    if not any(selector.values for selector in selectors):
        return
    # Under the request's app, or (naming none) under each app of its account.
    apps = (
        [request.app_id]
        if request.app_id is not None
        else await account_apps(db, request.account_id)
    )
    for index, selector in enumerate(selectors):
        earlier = selectors[:index]
        for chunk in _chunks(selector.values):
            async for device in _carrying(request, db, apps, selector, chunk, platforms, send_to):
                if device["token_hash"] in hashes or any(
                    device.get(e.field) in e.values for e in earlier
                ):
                    continue
                yield device


async def _carrying(
    request: SendRequest,
    db: AsyncDatabase[Document],
    apps: list[str],
    selector: _Selector,
    values: list[str],
    platforms: frozenset[str],
    send_to: SendTo,
) -> AsyncIterator[Document]:
    """The active devices (on `platforms`, if any) whose selector field is one of `values`,
    read through the contact directory; for `latest`, per value the one registered last."""
    devices = devices_carrying(
        db,
        selector.field,
        values,
        account_id=request.account_id,
        app_ids=apps,
        projection=_PROJECTION,
    )
    latest: dict[str, Document] = {}
    async for device in devices:
        if device.get("status") != "active" or (platforms and device["platform"] not in platforms):
            continue
        if send_to == "all":
            yield device
            continue
        value = device[selector.field]
        kept = latest.get(value)
        if kept is None or _registered(device) > _registered(kept):
            latest[value] = device
    for value in sorted(latest):
        yield latest[value]


def _registered(device: Document) -> tuple[bool, datetime, str]:
    """When the device was last registered, for `latest` (devices stored without the
    time first, ties by `_id`)."""
    at = device.get("registered_at")
    return (at is not None, at or datetime.min.replace(tzinfo=UTC), str(device["_id"]))


async def app_devices(
    request: SendRequest, db: AsyncDatabase[Document], after: str | None = None
) -> AsyncIterator[Document]:
    """Every active device of the request's app (of its account, on its `to.platforms`,
    in its `to.filters` segment), in `_id` order, from the one after the device `_id`
    `after`."""
    assert request.app_id is not None
    segment = request.to.filters
    if segment is None:
        async for device in active_app_devices(
            db, request.app_id, request.account_id, request.to.platforms, _PROJECTION, after
        ):
            yield device
        return
    test = compile_filter(segment)
    projection = {**_PROJECTION, **dict.fromkeys(FIELDS, 1)}
    async for device in active_app_devices(
        db, request.app_id, request.account_id, request.to.platforms, projection, after
    ):
        if test(device):
            yield device


async def unregistered_tokens(request: SendRequest, db: AsyncDatabase[Document]) -> set[str]:
    """The request's raw tokens that match no device of its account (in any status)."""
    by_hash = {hash_token(token): token for token in request.to.tokens}
    apps = await account_apps(db, request.account_id)
    if request.app_id is not None:
        apps.append(request.app_id)
    known = {
        device["token_hash"]
        async for device in with_tokens(db, apps, by_hash, {"token_hash": 1, "account_id": 1})
        if device.get("account_id") == request.account_id
    }
    return {token for digest, token in by_hash.items() if digest not in known}


async def _token_apps(request: SendRequest, db: AsyncDatabase[Document]) -> list[str]:
    """The apps whose devices the request's raw tokens are looked up under: its app, or
    with `tokens_from="account"` (or no app) every app of its account."""
    apps = [request.app_id] if request.app_id is not None else []
    if request.to.tokens_from == "account" or request.app_id is None:
        apps.extend(await account_apps(db, request.account_id))
    return apps


def job_for(request: SendRequest, device: Document) -> PushJob:
    """The delivery job of one device."""
    delivery = Delivery.of(device)
    return PushJob(
        notification_id=request.notification_id,
        account_id=device["account_id"],
        app_id=device["app_id"],
        provider=delivery.provider,
        platform=delivery.platform,
        token=device["token"],
        token_hash=device["token_hash"],
        subscription=delivery.subscription,
        notification=request.content_for(device.get("language")),
        data=request.data,
        options=request.options,
        accepted_at=request.accepted_at,
        lane=request.lane,
    )


def job_for_raw_token(request: SendRequest, app_id: str, token: str) -> PushJob:
    """The FCM job of a raw token no device of the account has registered."""
    return PushJob(
        notification_id=request.notification_id,
        account_id=request.account_id,
        app_id=app_id,
        provider="fcm",
        platform="android",
        token=token,
        token_hash=hash_token(token),
        notification=request.notification,
        data=request.data,
        options=request.options,
        accepted_at=request.accepted_at,
        lane=request.lane,
    )


def position(job: PushJob) -> str:
    """Where a `to.all` or `to.filters` fan-out stands once `job` is produced: its
    device's `_id`."""
    return device_id(job.app_id, job.token_hash)


async def expand(
    request: SendRequest, db: AsyncDatabase[Document], after: str | None = None
) -> AsyncIterator[PushJob]:
    """Every job of a send request: registered devices, then unregistered raw tokens
    (through FCM under the request's app; dropped when the request names no app).

    For `to.all` and `to.filters`, the app's devices (in the segment) in `_id` order, after
    the device `_id` `after` when resuming; `send_to` does not apply (it picks among a
    contact's devices).
    """
    if request.positioned:
        async for device in app_devices(request, db, after):
            yield job_for(request, device)
        return
    send_to = await send_to_of(request, db)
    async for device in targeted_devices(request, db, send_to):
        yield job_for(request, device)
    if request.to.tokens and request.app_id is not None:
        for token in sorted(await unregistered_tokens(request, db)):
            yield job_for_raw_token(request, request.app_id, token)
