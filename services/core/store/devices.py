"""The `devices` collection: one document per (app, token hash), whose `_id` is
`{app_id}:{token_hash}` (`device_id`).

Only the feedback stream writes here; the resolver reads. Deriving `_id` from the app and
the token makes every lookup of a token a read by `_id`, and every device of an app one
`_id` range in a stable order (`app_range`): the two access paths the local store serves
without scanning per value (ARCHITECTURE.md, "Collections"). A contact's devices are found
through the contact directory (`services.core.store.directory`), which every write of a
device's contact id, cellphone or email keeps in step.

The local store uses the `_id` index only when the filter names `_id` alone: `_id` with
any other condition scans the collection. So devices are read and written by `_id` alone,
and the other conditions are checked on the documents read.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, UpdateMany, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.core.events import (
    CleanupDevices,
    RegisterDevice,
    UpdateDevice,
    WebPushSubscription,
    utc_now,
)
from services.core.fields import MAX_TAGS, Platform, ProviderName
from services.core.store.client import Document, insert_new
from services.core.store.directory import (
    FIELDS,
    READ_CHUNK,
    Directory,
    devices_carrying,
    entries_of,
)
from services.core.tokens import hash_token


def device_id(app_id: str, token_hash: str) -> str:
    """The `_id` of the device with this token under this app."""
    return f"{app_id}:{token_hash}"


def of_app(app_id: str, device: str) -> bool:
    """Whether the device `_id` `device` is one of the app's."""
    return device.startswith(device_id(app_id, ""))


def app_range(app_id: str, after: str | None = None) -> Document:
    """The `_id` condition of every device of the app, or of those after the `_id` `after`.

    App ids hold no `:` (letters, digits, `.`, `_`, `-`), so `{app_id}:` starts the ids of
    this app alone and `{app_id};` (`;` follows `:`) bounds them.
    """
    return {"$gt": after or f"{app_id}:", "$lt": f"{app_id};"}


# Devices per cursor batch of an app's range read (`active_app_devices`).
CURSOR_BATCH = 1000
# Devices moved per write by `migrate_device_ids`: bounded memory and bounded writes.
MIGRATION_BATCH = 1000
# The `migrations` document that says every device has its derived `_id`.
_DEVICE_IDS_MIGRATED = "device_ids"
# The registration time of a device stored without one: before any provider's answer.
_LONG_AGO = datetime(1970, 1, 1, tzinfo=UTC)


async def migrate_device_ids(db: AsyncDatabase[Document]) -> int:
    """Give every device stored with a generated ObjectId `_id` (before `_id` was derived
    from the app and the token) its `device_id`, in batches; return how many moved.

    Each service runs this at start-up, before it reads or writes a device, so none looks
    for a device by `_id` while an older one is still to be moved. Safe to run at once in
    several processes and to interrupt: a batch is inserted under the new `_id` (a copy
    that exists, moved by another process or registered since, is kept) before the old
    documents go, so a run that dies between the two writes is finished by the next.
    Once no old device is left, a marker spares later start-ups the scan.
    """
    if await db.migrations.find_one({"_id": _DEVICE_IDS_MIGRATED}) is not None:
        return 0
    moved = 0
    batch: list[Document] = []
    # Comparison operators match one BSON type only: this selects the ObjectId ids alone.
    async for old in db.devices.find(
        {"_id": {"$gte": ObjectId("0" * 24)}}, batch_size=MIGRATION_BATCH
    ):
        batch.append(old)
        if len(batch) == MIGRATION_BATCH:
            moved += await _move(db, batch)
            batch = []
    moved += await _move(db, batch)
    await db.migrations.update_one(
        {"_id": _DEVICE_IDS_MIGRATED}, {"$set": {"at": utc_now(), "moved": moved}}, upsert=True
    )
    return moved


async def _move(db: AsyncDatabase[Document], olds: list[Document]) -> int:
    if not olds:
        return 0
    await insert_new(
        db.devices, [{**old, "_id": device_id(old["app_id"], old["token_hash"])} for old in olds]
    )
    await db.devices.delete_many({"_id": {"$in": [old["_id"] for old in olds]}})
    return len(olds)


@dataclass(frozen=True)
class Delivery:
    """How a stored device is reached. A registration of a token the app already has keeps
    it, whichever dialect the device came in through: only the first registration's
    platform (or the guess from the token's shape) decides it."""

    platform: Platform
    provider: ProviderName
    subscription: WebPushSubscription | None

    @classmethod
    def of(cls, device: Document) -> Delivery:
        """The delivery of a device document."""
        subscription = device.get("subscription")
        return cls(
            platform=device["platform"],
            provider=device["provider"],
            subscription=WebPushSubscription.model_validate(subscription) if subscription else None,
        )


class DevicesRepository:
    """Reads and writes of device documents."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._db = db
        self._devices = db.devices
        self._directory = Directory(db)

    async def find(self, app_id: str, token_hash: str) -> Document | None:
        """The device with this token under this app, active or not."""
        return await self._devices.find_one({"_id": device_id(app_id, token_hash)})

    async def register(
        self, command: RegisterDevice, provider: ProviderName, token_hash: str
    ) -> None:
        """Create the device, or refresh it and make it active again.

        A device the app already has keeps its platform, provider and subscription (its
        `Delivery`), and of the contact id, cellphone and email takes only those the command
        gives: an association adds to what another dialect registered. Its tags and
        language are replaced when the command gives them, kept otherwise. The device enters
        the directory entries of the values given before it is written, and leaves those
        of values it no longer carries after; its `listed` names every entry it may be in,
        so a redelivered command finishes a leaving a crash interrupted.

        Raises pymongo.errors.PyMongoError when the store refuses a write.
        """
        now = utc_now()
        contact = {
            "contact_id": command.contact_id,
            "cellphone": command.cellphone,
            "email": command.email,
        }
        given = {field: value for field, value in contact.items() if value is not None}
        # Tags and a language given replace the device's; a refresh without keeps them.
        described = {
            field: value
            for field, value in (("tags", command.tags), ("language", command.language))
            if value is not None
        }
        update: dict[str, Any] = {
            "$set": {
                "account_id": command.account_id,
                **given,
                **described,
                "status": "active",
                "invalid_reason": None,
                "invalid_at": None,
                "registered_at": command.received_at,
                "updated": now,
            },
            # Decided in the same write that creates the device, so a registration that
            # raced ahead of the resolver's read cannot change how the device is reached.
            "$setOnInsert": {
                "platform": command.platform,
                "provider": provider,
                "token": command.token,
                "subscription": (
                    command.subscription.model_dump() if command.subscription else None
                ),
                **{field: None for field in contact.keys() - given.keys()},
                "app_id": command.app_id,
                "token_hash": token_hash,
                "created": now,
            },
        }
        device = device_id(command.app_id, token_hash)
        if not given:
            # The values it carries stay as they are: so do its entries.
            await self._write(device, update)
            return
        scope = {"app_id": command.app_id, "account_id": command.account_id}
        entering = entries_of({**scope, **given})
        await self._directory.enter(device, entering)
        update["$addToSet"] = {"listed": {"$each": sorted(entering)}}
        before = await self._write(device, update) or {}
        listed = set(before.get("listed") or ())
        kept: Document = {field: before.get(field) for field in FIELDS if field not in given}
        carried = entries_of({**scope, **kept, **given})
        unlisted = carried - entering - listed
        if unlisted:
            # Values it carried from before the directory (entered by the start-up build,
            # or by nobody if an older worker wrote it since): listed from now on.
            await self._directory.enter(device, unlisted)
            await self._devices.update_one(
                {"_id": device}, {"$addToSet": {"listed": {"$each": sorted(unlisted)}}}
            )
        stale = (listed | entries_of(before)) - carried
        if stale:
            await self._directory.leave(device, stale)
            await self._devices.update_one(
                {"_id": device}, {"$pull": {"listed": {"$in": sorted(stale)}}}
            )

    async def update(self, command: UpdateDevice) -> bool:
        """Change a device's tags and language as the command says: one read and one write
        by `_id` (safe: the device's events reach feedback in order). Returns False, and
        changes nothing, when the account has no such device or its tags would number more
        than MAX_TAGS.

        Raises pymongo.errors.PyMongoError when the store refuses the write.
        """
        device = device_id(command.app_id, hash_token(command.token))
        found = await self._devices.find_one({"_id": device}, {"account_id": 1, "tags": 1})
        if found is None or found.get("account_id") != command.account_id:
            return False
        removed = set(command.removed_tags)
        kept = {k: v for k, v in (found.get("tags") or {}).items() if k not in removed}
        tags = {**kept, **command.tags}
        if len(tags) > MAX_TAGS:
            return False
        changes: dict[str, Any] = {"tags": tags, "updated": utc_now()}
        if command.language is not None or command.remove_language:
            changes["language"] = command.language
        await self._devices.update_one({"_id": device}, {"$set": changes})
        return True

    async def mark_active(self, active: Sequence[tuple[str, str, datetime]]) -> None:
        """Record when each (app, token hash) was last active, from its app's reports of
        what its user did: never moved back, never creating a device that is gone."""
        latest: dict[str, datetime] = {}
        for app_id, token_hash, at in active:
            device = device_id(app_id, token_hash)
            latest[device] = max(at, latest.get(device, at))
        if latest:
            await self._devices.bulk_write(
                [
                    UpdateOne({"_id": device}, {"$max": {"last_active_at": at}})
                    for device, at in latest.items()
                ],
                ordered=False,
            )

    async def _write(self, device: str, update: Document) -> Document | None:
        """Upsert the device; return it as it was before (None when new)."""
        query = {"_id": device}
        try:
            return await self._devices.find_one_and_update(query, update, upsert=True)
        except DuplicateKeyError:
            # Two upserts of a new device raced; the loser now finds the winner's document.
            return await self._devices.find_one_and_update(query, update)

    async def invalidate(self, invalid: Sequence[tuple[str, str, datetime]], reason: str) -> int:
        """Mark active devices invalid for `reason`, each given as (app, token hash, since),
        unless it was registered after its `since` (the provider's answer and a
        re-registration race through Kafka: the newer one wins). Returns how many changed.

        One read and one write, both by `_id` alone (any other condition is a scan of the
        collection on the local store): the conditions are checked here, which is safe
        because the device's events, invalidations included, reach feedback in order
        through the device's partition.
        """
        since_of = {device_id(app_id, token_hash): since for app_id, token_hash, since in invalid}
        if not since_of:
            return 0
        found = self._devices.find(
            {"_id": {"$in": list(since_of)}}, {"status": 1, "registered_at": 1}
        )
        now = utc_now()
        changes = [
            UpdateOne(
                {"_id": device["_id"]},
                {
                    "$set": {
                        "status": "invalid",
                        "invalid_reason": reason,
                        "invalid_at": since_of[device["_id"]],
                        "updated": now,
                    }
                },
            )
            async for device in found
            if device.get("status") == "active"
            and device.get("registered_at", _LONG_AGO) < since_of[device["_id"]]
        ]
        if changes:
            await self._devices.bulk_write(changes, ordered=False)
        return len(changes)

    async def mark_reached(self, reached: Sequence[tuple[str, str, datetime]]) -> None:
        """Record when each (app, token hash) last took a notification: one bulk write,
        one update per distinct time (the outcomes of one provider call share theirs)."""
        latest: dict[str, datetime] = {}
        for app_id, token_hash, at in reached:
            device = device_id(app_id, token_hash)
            latest[device] = max(at, latest.get(device, at))
        by_time: dict[datetime, list[str]] = {}
        for device, at in latest.items():
            by_time.setdefault(at, []).append(device)
        if by_time:
            await self._devices.bulk_write(
                [
                    UpdateMany({"_id": {"$in": devices}}, {"$set": {"last_success_at": at}})
                    for at, devices in by_time.items()
                ],
                ordered=False,
            )

    async def clean_up(self, command: CleanupDevices) -> int:
        """Delete the devices the cleanup names; return how many were deleted.

        With a token, its device, if it belongs to the account (and to the contact, when
        one is named too); with a contact id alone, every device of the contact under the
        app (the resolver sends these as one cleanup per device, so each is applied in
        order with the device's other events). Each deleted device then leaves the
        directory; a token whose device is gone finishes a leaving a crash interrupted.
        """
        if command.token is not None:
            device = device_id(command.app_id, hash_token(command.token))
            found = await self._devices.find_one({"_id": device})
            if found is None:
                await self._directory.departed(device)
                return 0
            named = command.contact_id is None or found.get("contact_id") == command.contact_id
            targets = [found] if named and found.get("account_id") == command.account_id else []
        elif command.contact_id is not None:
            targets = [
                found
                async for found in devices_carrying(
                    self._db,
                    "contact_id",
                    [command.contact_id],
                    account_id=command.account_id,
                    app_ids=[command.app_id],
                    projection={"cellphone": 1, "email": 1, "listed": 1},
                )
            ]
        else:
            # Neither a contact nor a token: refuse to wipe the whole app.
            return 0
        deleted = 0
        for found in targets:
            device = found["_id"]
            await self._directory.departing(
                device, set(found.get("listed") or ()) | entries_of(found)
            )
            result = await self._devices.delete_one({"_id": device})
            deleted += result.deleted_count
            await self._directory.departed(device)
        return deleted


async def with_tokens(
    db: AsyncDatabase[Document],
    app_ids: Iterable[str],
    token_hashes: Iterable[str],
    projection: Mapping[str, Any],
) -> AsyncIterator[Document]:
    """The devices with these token hashes under these apps, in any status: reads of
    `_id` `$in` (app x hash), READ_CHUNK ids at a time. An account's raw tokens are looked
    up under each of its apps (`account_apps`): an account has few apps."""
    ids = sorted(device_id(app_id, h) for app_id in set(app_ids) for h in set(token_hashes))
    for start in range(0, len(ids), READ_CHUNK):
        cursor = db.devices.find({"_id": {"$in": ids[start : start + READ_CHUNK]}}, projection)
        async for device in cursor:
            yield device


async def active_app_devices(
    db: AsyncDatabase[Document],
    app_id: str,
    account_id: str,
    platforms: Collection[str],
    projection: Mapping[str, Any],
    after: str | None = None,
) -> AsyncIterator[Document]:
    """Every active device of the app under the account (on `platforms`, if any), in `_id`
    order, from the one after the device `_id` `after`.

    One range read: the local store answers it with one pass over the collection in `_id`
    order, MongoDB with its `_id` index (the hint keeps that order).
    """
    query: dict[str, Any] = {
        "_id": app_range(app_id, after),
        "account_id": account_id,
        "status": "active",
    }
    if platforms:
        query["platform"] = {"$in": sorted(set(platforms))}
    cursor = db.devices.find(query, projection, batch_size=CURSOR_BATCH).hint([("_id", ASCENDING)])
    async for device in cursor:
        yield device


async def account_apps(db: AsyncDatabase[Document], account_id: str) -> list[str]:
    """The ids of every app of the account (one read of the small `apps` collection)."""
    return sorted(
        [app["_id"] async for app in db.apps.find({"account_id": account_id}, {"_id": 1})]
    )


# What a listing reads of a device: never its token or subscription, which a caller names
# by the token's hash.
LISTED = dict.fromkeys(
    (
        "token_hash",
        "platform",
        "provider",
        "status",
        "contact_id",
        "cellphone",
        "email",
        "invalid_reason",
        "invalid_at",
        "registered_at",
        "last_success_at",
        "last_active_at",
        "tags",
        "language",
        "created",
        "updated",
    ),
    1,
)


def tag_condition(value: str | None) -> Document:
    """The store condition on `tags.{key}` of a listing's tag filter: present (`value`
    None), or equal to `value` as a string or, when it reads as one, as a number."""
    if value is None:
        return {"$exists": True}
    wanted: list[object] = [value]
    try:
        number = float(value)
    except ValueError:
        return {"$in": wanted}
    if math.isfinite(number):
        wanted.append(int(number) if number.is_integer() else number)
    return {"$in": wanted}


def _has_tag(device: Document, key: str, value: str | None) -> bool:
    """Whether a device read meets `tag_condition(value)` on its tag `key`."""
    tags = device.get("tags") or {}
    if key not in tags:
        return False
    if value is None:
        return True
    stored = tags[key]
    if isinstance(stored, str):
        return stored == value
    numbers = tag_condition(value)["$in"][1:]
    return not isinstance(stored, bool) and stored in numbers


async def app_devices_page(
    db: AsyncDatabase[Document],
    app_id: str,
    account_id: str,
    *,
    after: str | None,
    limit: int,
    contact_id: str | None = None,
    platforms: Collection[str] = (),
    statuses: Collection[str] = (),
    tags: Mapping[str, str | None] | None = None,
) -> list[Document]:
    """Up to `limit` devices of the app under the account (their LISTED fields), in `_id`
    order from the one after the device `_id` `after`: one page of a listing. Only those
    of the contact, on `platforms`, in `statuses` and with `tags` (each key present, or
    equal to its value: `tag_condition`), when given.

    A contact's devices are two point reads through the contact directory, paged here (a
    contact has few). Without one, one range read like `active_app_devices`: MongoDB walks
    its `_id` index and stops at `limit`; the local store makes one pass per page.
    """
    if contact_id is not None:
        found = devices_carrying(
            db,
            "contact_id",
            [contact_id],
            account_id=account_id,
            app_ids=[app_id],
            projection=LISTED,
        )
        start = after or ""
        return sorted(
            [
                device
                async for device in found
                if device["_id"] > start
                and (not platforms or device.get("platform") in platforms)
                and (not statuses or device.get("status") in statuses)
                and all(_has_tag(device, key, value) for key, value in (tags or {}).items())
            ],
            key=lambda device: str(device["_id"]),
        )[:limit]
    query: dict[str, Any] = {"_id": app_range(app_id, after), "account_id": account_id}
    if platforms:
        query["platform"] = {"$in": sorted(set(platforms))}
    if statuses:
        query["status"] = {"$in": sorted(set(statuses))}
    for key, value in (tags or {}).items():
        query[f"tags.{key}"] = tag_condition(value)
    cursor = db.devices.find(query, LISTED).sort("_id", ASCENDING).limit(limit)
    return await cursor.to_list(None)
