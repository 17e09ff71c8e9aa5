"""The contact directory: which devices carry a contact id, a cellphone or an email.

`contact_devices` holds one document per addressable value of an app, `_id`
`{app_id}:{field}:{value}` (`entry_id`; field `contact_id`, `cellphone` or `email`),
whose `devices` are the `_id`s of the app's devices carrying the value. A lookup across
an account (Masiv's cellphones and emails without an app, a send request naming no app)
reads the entries of each of the account's apps, as raw tokens are looked up under each
app (an account has few apps): one scope for every entry, three entries per device at
most. A device lists the entries it may be in (its `listed`); `departing_devices` keeps
that list for a device being deleted, until the device has left them.

Why: the local store (mongo-java-server 1.47 on H2) answers a query from an index only for
`_id` equality or `_id` `$in`, or equality on every key of a unique index. Anything else
(a non-unique index, an `_id` range, `_id` together with any other condition) scans the
collection, ~88,000 documents/s here: a lookup of one contact's devices took ~1 s at
100,000 devices and ~10 s at 1,000,000. Through this directory it is two point reads, the
entry by `_id` and its devices by `_id` `$in` (`devices_carrying`); on MongoDB both are
index reads too.

Kept in step without multi-document transactions by feedback, the only writer of device
state, which applies the events about one device in order (one partition per device key;
the resolver splits a contact-wide cleanup into one per device):
- A device enters the entries of the values it is about to carry BEFORE it is written
  (`enter`), and leaves those of values it no longer carries AFTER (`leave`; the device's
  `listed` is trimmed last). A deleted device notes its entries in `departing_devices`
  first, is deleted, then leaves them and the note goes (`departing`, `departed`). A
  crash between two steps can leave an entry naming a device that does not carry its
  value, never a device missing from the entry of a value it carries; the redelivered
  event repeats the steps, each idempotent, and `listed` or the note says what is left
  to leave.
- Readers check each device they read (that it carries the value, in the scope asked), so
  correctness needs the directory complete, not exact.
- An entry left without devices is deleted, guarded by its version `v` (a fresh ObjectId at
  every change; `_id` + `v` is a unique index, which the local store answers by equality):
  a device of another partition entering it meanwhile changes `v` and keeps it.

`build_contact_directory` enters the devices stored before the directory existed, once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, Literal

from bson import ObjectId
from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from services.core.events import utc_now
from services.core.store.client import Document, insert_new

Field = Literal["contact_id", "cellphone", "email"]
FIELDS: tuple[Field, ...] = ("contact_id", "cellphone", "email")

# Device `_id`s per `$in` read of `devices`.
READ_CHUNK = 1000
# Devices entered per batch by `build_contact_directory`: a value's devices met in one
# batch cost one write to its entry (the scan is in `_id` order, not by value).
BUILD_BATCH = 5000
# The `migrations` document that says the directory holds every stored device.
_BUILT = "contact_directory"
_DUPLICATE_KEY = 11000


def entry_id(app_id: str, field: Field, value: str) -> str:
    """The `_id` of the entry of `value` of `field` under the app.

    App ids hold no `:`, so the value, last, may hold any character.
    """
    return f"{app_id}:{field}:{value}"


def entries_of(device: Mapping[str, Any]) -> set[str]:
    """Every entry a device document belongs in, by the values it carries."""
    app_id = device.get("app_id")
    if app_id is None:
        return set()
    return {
        entry_id(app_id, field, device[field]) for field in FIELDS if device.get(field) is not None
    }


def _adding(entry: str, devices: list[str]) -> UpdateOne:
    return UpdateOne(
        {"_id": entry},
        {"$addToSet": {"devices": {"$each": devices}}, "$set": {"v": ObjectId()}},
        upsert=True,
    )


def _pulling(entry: str, devices: list[str]) -> UpdateOne:
    return UpdateOne(
        {"_id": entry}, {"$pull": {"devices": {"$in": devices}}, "$set": {"v": ObjectId()}}
    )


async def _write(collection: AsyncCollection[Document], operations: list[UpdateOne]) -> None:
    """One unordered bulk write; an upsert that lost a race to create its document (a
    duplicate key) is applied again, now as an update."""
    if not operations:
        return
    try:
        await collection.bulk_write(operations, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(error.get("code") != _DUPLICATE_KEY for error in errors):
            raise
        await collection.bulk_write([operations[e["index"]] for e in errors], ordered=False)


class Directory:
    """Writes of the directory, in the order described above (feedback only)."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._entries = db.contact_devices
        self._departing = db.departing_devices

    async def enter(self, device: str, entries: Iterable[str]) -> None:
        """Before `device` is written to carry the values of `entries`: add it to each."""
        await _write(self._entries, [_adding(entry, [device]) for entry in sorted(set(entries))])

    async def leave(self, device: str, entries: Iterable[str]) -> None:
        """After `device` stopped carrying the values of `entries` (or was deleted): take it
        out of each, and delete those left empty."""
        stale = sorted(set(entries))
        if not stale:
            return
        await _write(self._entries, [_pulling(entry, [device]) for entry in stale])
        async for entry in self._entries.find({"_id": {"$in": stale}}):
            if not entry.get("devices"):
                # Only if unchanged since read: `_id` and `v` are a unique index.
                await self._entries.delete_one({"_id": entry["_id"], "v": entry.get("v")})

    async def departing(self, device: str, entries: Iterable[str]) -> None:
        """Before `device` is deleted: note the entries it is in, for `departed`."""
        noted = sorted(set(entries))
        if noted:
            await self._departing.update_one(
                {"_id": device}, {"$addToSet": {"entries": {"$each": noted}}}, upsert=True
            )

    async def departed(self, device: str) -> None:
        """After `device` was deleted: leave the entries `departing` noted, then drop the
        note. Finishes a departure a crash interrupted; nothing when there is none."""
        note = await self._departing.find_one({"_id": device})
        if note is None:
            return
        await self.leave(device, note.get("entries") or ())
        await self._departing.delete_one({"_id": device})

    async def add(self, devices: Iterable[Mapping[str, Any]]) -> None:
        """Enter stored devices (documents with `_id`, app and account ids and their
        values) in bulk: new entries in one insert, existing ones added to. For devices
        written without the directory: the start-up build, and benchmarks loading devices
        straight into the store."""
        members: dict[str, list[str]] = defaultdict(list)
        for device in devices:
            for entry in sorted(entries_of(device)):
                members[entry].append(str(device["_id"]))
        fresh = await insert_new(
            self._entries, [{"_id": e, "devices": d, "v": ObjectId()} for e, d in members.items()]
        )
        await _write(
            self._entries,
            [_adding(e, d) for (e, d), new in zip(members.items(), fresh, strict=True) if not new],
        )


async def devices_carrying(
    db: AsyncDatabase[Document],
    field: Field,
    values: Iterable[str],
    *,
    account_id: str,
    app_ids: Sequence[str],
    projection: Mapping[str, Any],
) -> AsyncIterator[Document]:
    """The devices of the account under `app_ids` whose `field` is one of `values`, in any
    status, each once: their ids from the entries of each (app, value), then the devices
    by `_id`, each checked to still carry its value. Two point reads per READ_CHUNK
    devices; the caller bounds how many values (and apps: an account has few) it asks
    for at once.
    """
    wanted, apps = set(values), set(app_ids)
    entries = [entry_id(app, field, value) for app in sorted(apps) for value in sorted(wanted)]
    if not entries:
        return
    members: set[str] = set()
    async for entry in db.contact_devices.find({"_id": {"$in": entries}}, {"devices": 1}):
        members.update(entry.get("devices") or ())
    shown = {**projection, "app_id": 1, "account_id": 1, field: 1}
    ordered = sorted(members)
    for start in range(0, len(ordered), READ_CHUNK):
        chunk = ordered[start : start + READ_CHUNK]
        async for device in db.devices.find({"_id": {"$in": chunk}}, shown):
            if (
                device.get(field) in wanted
                and device.get("account_id") == account_id
                and device.get("app_id") in apps
            ):
                yield device


async def build_contact_directory(db: AsyncDatabase[Document]) -> int:
    """Enter every stored device in the directory, in `_id` order and batches; return how
    many devices were read.

    Each service runs this at start-up, after `migrate_device_ids` and before it reads or
    writes a device. Safe to run at once in several processes (entering is idempotent)
    and to interrupt: after each batch the `migrations` marker records the last device
    entered, and the next run goes on from there. Once done, the marker spares later
    start-ups the scan.
    """
    marker = await db.migrations.find_one({"_id": _BUILT})
    if marker is not None and marker.get("done"):
        return 0
    after = marker.get("after") if marker is not None else None
    directory = Directory(db)
    read = 0
    batch: list[Document] = []
    query: Document = {"_id": {"$gt": after}} if after is not None else {}
    fields = {"app_id": 1, "account_id": 1, "contact_id": 1, "cellphone": 1, "email": 1}
    # One pass in `_id` order (the hint keeps it on MongoDB; the local store scans so).
    cursor = db.devices.find(query, fields, batch_size=BUILD_BATCH).hint([("_id", ASCENDING)])
    async for device in cursor:
        batch.append(device)
        if len(batch) == BUILD_BATCH:
            read += await _enter_batch(db, directory, batch)
            batch = []
    read += await _enter_batch(db, directory, batch)
    await db.migrations.update_one(
        {"_id": _BUILT}, {"$set": {"done": True, "at": utc_now()}}, upsert=True
    )
    return read


async def _enter_batch(
    db: AsyncDatabase[Document], directory: Directory, batch: list[Document]
) -> int:
    if not batch:
        return 0
    await directory.add(batch)
    await db.migrations.update_one(
        {"_id": _BUILT}, {"$max": {"after": batch[-1]["_id"]}}, upsert=True
    )
    return len(batch)
