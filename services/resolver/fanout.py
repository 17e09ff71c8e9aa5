"""Fan-out: expand a send request into one job per targeted active device.

Devices are read with indexed queries over chunks of the request's selectors and streamed
in batches, so the audience is never held in memory; what is held is the size of the
request itself. A device reached by several selectors is produced once: each selector
skips the devices an earlier one already reached (raw tokens, then contact ids, cellphones,
emails), which needs only the request's own lists, not a set of every device seen.

`to.all` reads the app's devices as one `_id` range, in `_id` order (`app_devices`), so a
fan-out can resume after the last device it produced. So do selectors with more values
than one query takes (contact lists of a campaign), matched in the resolver.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from services.core.events import PushJob, SendRequest, SendTo
from services.core.store.client import Document
from services.core.store.devices import Delivery, app_range, device_id
from services.core.tokens import hash_token

# Selector values per query: large enough to amortise round trips, small enough for `$in`.
CHUNK = 500
# Devices per cursor batch.
CURSOR_BATCH = 1000

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
}


@dataclass(frozen=True)
class _Selector:
    field: str
    values: frozenset[str]


def _many(selectors: list[_Selector]) -> bool:
    """Whether the selectors hold more values than one query takes: then one pass over
    the app's devices beats a query per chunk (a transactional send stays on indexes)."""
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
    app = await db.apps.find_one({"_id": request.app_id}, {"settings": 1})
    return str(((app or {}).get("settings") or {}).get("send_to", "all"))  # type: ignore[return-value]


async def targeted_devices(
    request: SendRequest, db: AsyncDatabase[Document], send_to: SendTo
) -> AsyncIterator[Document]:
    """Each active device the request reaches, once.

    Raw tokens match the account's registered devices of any platform; the association
    selectors (contact ids, cellphones, emails) honour `to.platforms` and `send_to`
    (`latest`: per selector value, the most recently registered active device).
    """
    scope: dict[str, Any] = {"account_id": request.account_id, "status": "active"}
    if request.app_id is not None:
        scope["app_id"] = request.app_id
    hashes = frozenset(hash_token(token) for token in request.to.tokens)
    selectors = [
        _Selector("contact_id", frozenset(request.to.contact_ids)),
        _Selector("cellphone", frozenset(request.to.cellphones)),
        _Selector("email", frozenset(request.to.emails)),
    ]
    platforms = set(request.to.platforms)

    app_id = request.app_id
    for chunk in _chunks(hashes):
        if request.to.tokens_from == "account" or app_id is None:
            raw: dict[str, Any] = {
                **{k: v for k, v in scope.items() if k != "app_id"},
                "token_hash": {"$in": chunk},
            }
        else:
            # Within one app a token is found by `_id`.
            raw = {**scope, "_id": {"$in": [device_id(app_id, h) for h in chunk]}}
        cursor = db.devices.find(raw, _PROJECTION, batch_size=CURSOR_BATCH)
        async for device in cursor:
            yield device

    if request.app_id is not None and send_to == "all" and _many(selectors):
        # One pass over the app's devices, matched here: one scan on the local store, where
        # each chunk of `$in` values costs a scan of its own.
        async for device in app_devices(request, db):
            if device["token_hash"] not in hashes and any(
                device.get(s.field) in s.values for s in selectors
            ):
                yield device
        return

    for index, selector in enumerate(selectors):
        earlier = selectors[:index]
        for chunk in _chunks(selector.values):
            query: dict[str, Any] = {**scope, selector.field: {"$in": chunk}}
            if platforms:
                query["platform"] = {"$in": sorted(platforms)}
            cursor = db.devices.find(query, _PROJECTION, batch_size=CURSOR_BATCH)
            if send_to == "latest":
                cursor = cursor.sort([(selector.field, ASCENDING), ("registered_at", DESCENDING)])
            previous: str | None = None
            async for device in cursor:
                if send_to == "latest":
                    # Sorted by selector value, newest first: keep the first of each value.
                    if device[selector.field] == previous:
                        continue
                    previous = device[selector.field]
                if device["token_hash"] in hashes or any(
                    device.get(e.field) in e.values for e in earlier
                ):
                    continue
                yield device


async def app_devices(
    request: SendRequest, db: AsyncDatabase[Document], after: str | None = None
) -> AsyncIterator[Document]:
    """Every active device of the request's app (of its account, on its `to.platforms`),
    in `_id` order, from the one after the device `_id` `after`.

    One range read: the local store answers it with one pass over the collection in `_id`
    order, MongoDB with its `_id` index (the hint keeps that order).
    """
    assert request.app_id is not None
    query: dict[str, Any] = {
        "_id": app_range(request.app_id, after),
        "account_id": request.account_id,
        "status": "active",
    }
    if request.to.platforms:
        query["platform"] = {"$in": sorted(set(request.to.platforms))}
    cursor = db.devices.find(query, _PROJECTION, batch_size=CURSOR_BATCH).hint([("_id", ASCENDING)])
    async for device in cursor:
        yield device


async def unregistered_tokens(request: SendRequest, db: AsyncDatabase[Document]) -> set[str]:
    """The request's raw tokens that match no device of its account (in any status)."""
    by_hash = {hash_token(token): token for token in request.to.tokens}
    known: set[str] = set()
    for chunk in _chunks(by_hash):
        cursor = db.devices.find(
            {"account_id": request.account_id, "token_hash": {"$in": chunk}}, {"token_hash": 1}
        )
        known.update([device["token_hash"] async for device in cursor])
    return {token for digest, token in by_hash.items() if digest not in known}


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
        notification=request.notification,
        data=request.data,
        options=request.options,
        accepted_at=request.accepted_at,
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
    )


def position(job: PushJob) -> str:
    """Where a `to.all` fan-out stands once `job` is produced: its device's `_id`."""
    return device_id(job.app_id, job.token_hash)


async def expand(
    request: SendRequest, db: AsyncDatabase[Document], after: str | None = None
) -> AsyncIterator[PushJob]:
    """Every job of a send request: registered devices, then unregistered raw tokens
    (through FCM under the request's app; dropped when the request names no app).

    For `to.all`, the app's devices in `_id` order, after the device `_id` `after` when
    resuming; `send_to` does not apply (it picks among a contact's devices).
    """
    if request.to.all:
        async for device in app_devices(request, db, after):
            yield job_for(request, device)
        return
    send_to = await send_to_of(request, db)
    async for device in targeted_devices(request, db, send_to):
        yield job_for(request, device)
    if request.to.tokens and request.app_id is not None:
        for token in sorted(await unregistered_tokens(request, db)):
            yield job_for_raw_token(request, request.app_id, token)
