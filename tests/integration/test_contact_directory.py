"""The contact directory on the real store: feedback's device writes keep it in step across
registrations, re-associations, cleanups, invalidations and redeliveries of each; a crash
between two of a write's steps leaves sends right; the start-up build enters devices
stored before it, resumably."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import timedelta

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core.events import (
    Audience,
    CleanupDevices,
    Content,
    Options,
    RegisterDevice,
    SendRequest,
    utc_now,
)
from services.core.settings import Settings
from services.core.store import directory as directory_module
from services.core.store.client import Document
from services.core.store.devices import DevicesRepository, device_id
from services.core.store.directory import Directory, build_contact_directory, entries_of
from services.core.store.indexes import ensure_indexes
from services.core.tokens import hash_token
from services.ingest.sending import Sends
from services.resolver.fanout import expand
from services.resolver.registrations import device_cleanups

pytestmark = pytest.mark.integration

ACCOUNT = "acc-1"
APP = "app-1"


def registration(token: str, *, age: int = 0, app_id: str = APP, **values: str) -> RegisterDevice:
    return RegisterDevice(
        request_id=f"req-{token}",
        account_id=ACCOUNT,
        app_id=app_id,
        platform="android",
        token=token,
        source="native",
        received_at=utc_now() - timedelta(minutes=age),
        **values,
    )


async def register(db: AsyncDatabase[Document], command: RegisterDevice) -> None:
    await DevicesRepository(db).register(command, "fcm", hash_token(command.token))


def cleanup(*, token: str | None = None, contact_id: str | None = None) -> CleanupDevices:
    return CleanupDevices(
        request_id="clean", account_id=ACCOUNT, app_id=APP, token=token, contact_id=contact_id
    )


async def apply_cleanup(db: AsyncDatabase[Document], command: CleanupDevices) -> int:
    """As the pipeline applies it: split per device by the resolver, then feedback."""
    deleted = 0
    async for each in device_cleanups(command, db):
        deleted += await DevicesRepository(db).clean_up(each)
    return deleted


def ident(token: str) -> str:
    return device_id(APP, hash_token(token))


async def assert_exact(db: AsyncDatabase[Document], *, listed: bool = True) -> None:
    """Every entry names exactly the devices carrying its value; no empty entry, no
    departure left half done; each device lists exactly its entries."""
    expected: dict[str, set[str]] = defaultdict(set)
    async for device in db.devices.find({}):
        for entry in entries_of(device):
            expected[entry].add(device["_id"])
        if listed:
            assert set(device.get("listed") or ()) == entries_of(device), device["token"]
    found = {e["_id"]: set(e["devices"]) async for e in db.contact_devices.find({})}
    assert found == dict(expected)
    assert await db.departing_devices.count_documents({}) == 0


async def sent(
    db: AsyncDatabase[Document],
    send_to: str | None = "all",
    app_id: str | None = APP,
    **to: list[str],
) -> set[str]:
    request = SendRequest(
        notification_id="n-1",
        account_id=ACCOUNT,
        app_id=app_id,
        to=Audience.model_validate(to),
        notification=Content(title="Hola"),
        options=Options.model_validate({"send_to": send_to}),
    )
    return {job.token async for job in expand(request, db)}


async def reach(db: AsyncDatabase[Document], settings: Settings, contact: str) -> dict[str, int]:
    found = await Sends(db, None, settings).reachability(ACCOUNT, APP, contact)
    return {p: int(str(r["active"])) + int(str(r["invalid"])) for p, r in found.items()}


@pytest.fixture
async def store(db: AsyncDatabase[Document]) -> AsyncDatabase[Document]:
    await ensure_indexes(db)
    return db


async def test_registrations_and_re_associations_keep_it_exact_and_redelivery_changes_nothing(
    store: AsyncDatabase[Document],
) -> None:
    db = store
    steps = [
        registration("t1", contact_id="ana", cellphone="573001", email="ana@example.com"),
        registration("t2", contact_id="ana"),
        # Re-associated: t1 moves to bea and keeps its cellphone and email.
        registration("t1", contact_id="bea"),
        # An association (Masiv) adds an email to t2, which keeps its contact.
        registration("t2", email="two@example.com"),
    ]
    for command in steps:
        await register(db, command)
        await assert_exact(db)
        await register(db, command)  # redelivered
        await assert_exact(db)

    assert await sent(db, contact_ids=["ana"]) == {"t2"}
    assert await sent(db, contact_ids=["bea"]) == {"t1"}
    assert await sent(db, cellphones=["573001"]) == {"t1"}
    assert await sent(db, emails=["two@example.com", "ana@example.com"]) == {"t1", "t2"}
    # Two contact ids, a cellphone and two emails.
    assert await db.contact_devices.count_documents({}) == 5


async def test_cleanups_and_their_redelivery_empty_the_directory(
    store: AsyncDatabase[Document],
) -> None:
    db = store
    for command in (
        registration("t1", contact_id="ana", cellphone="573001"),
        registration("t2", contact_id="ana"),
        registration("t3", contact_id="bea", email="bea@example.com"),
    ):
        await register(db, command)

    # A token and a contact that do not belong together: nothing goes.
    assert await apply_cleanup(db, cleanup(token="t3", contact_id="ana")) == 0
    for _ in range(2):  # the second time redelivered
        await apply_cleanup(db, cleanup(token="t3"))
        await assert_exact(db)
    assert await sent(db, contact_ids=["bea"], emails=["bea@example.com"]) == set()

    assert await apply_cleanup(db, cleanup(contact_id="ana")) == 2
    assert await apply_cleanup(db, cleanup(contact_id="ana")) == 0
    assert await db.devices.count_documents({}) == 0
    assert await db.contact_devices.count_documents({}) == 0
    assert await db.departing_devices.count_documents({}) == 0


async def test_an_invalid_device_stays_listed_but_gets_no_send(
    store: AsyncDatabase[Document], settings: Settings
) -> None:
    db = store
    await register(db, registration("t1", contact_id="ana", age=5))
    await register(db, registration("t2", contact_id="ana", age=5))
    repository = DevicesRepository(db)
    for _ in range(2):
        await repository.invalidate([(APP, hash_token("t1"), utc_now())], "UNREGISTERED")
        await assert_exact(db)
    assert await sent(db, contact_ids=["ana"]) == {"t2"}
    assert await reach(db, settings, "ana") == {"android": 2}


async def test_latest_is_each_values_last_registered_active_device(
    store: AsyncDatabase[Document],
) -> None:
    db = store
    await register(db, registration("old", contact_id="ana", cellphone="573001", age=30))
    await register(db, registration("newer", contact_id="ana", age=20))
    await register(db, registration("newest", contact_id="ana", age=10))
    await register(db, registration("bea", contact_id="bea", cellphone="573001", age=40))
    await DevicesRepository(db).invalidate([(APP, hash_token("newest"), utc_now())], "UNREGISTERED")
    assert await sent(db, "latest", contact_ids=["ana", "bea"]) == {"newer", "bea"}
    # Per cellphone, among the account's devices carrying it; skipped if reached before.
    assert await sent(db, "latest", cellphones=["573001"]) == {"old"}
    assert await sent(db, "latest", contact_ids=["ana"], cellphones=["573001"]) == {"newer"}


async def test_a_request_without_send_to_takes_its_apps_setting(
    store: AsyncDatabase[Document],
) -> None:
    db = store
    await register(db, registration("old", contact_id="ana", age=20))
    await register(db, registration("new", contact_id="ana", age=10))
    # An app the store does not have: the default, every device.
    assert await sent(db, None, contact_ids=["ana"]) == {"old", "new"}
    await db.apps.insert_one({"_id": APP, "account_id": ACCOUNT, "settings": {"send_to": "latest"}})
    assert await sent(db, None, contact_ids=["ana"]) == {"new"}
    assert await sent(db, "all", contact_ids=["ana"]) == {"old", "new"}


async def test_a_send_naming_no_app_reads_the_entries_of_each_app_of_the_account(
    store: AsyncDatabase[Document],
) -> None:
    db = store
    await db.apps.insert_many([{"_id": app, "account_id": ACCOUNT} for app in (APP, "app-2")])
    await register(db, registration("t1", contact_id="ana", email="ana@example.com", age=2))
    await register(db, registration("t2", app_id="app-2", contact_id="ana", age=1))
    await register(db, registration("t3", app_id="app-2", email="ana@example.com", age=3))
    # Another account's app, same values.
    await DevicesRepository(db).register(
        registration("t4", app_id="app-3", contact_id="ana").model_copy(
            update={"account_id": "acc-2"}
        ),
        "fcm",
        hash_token("t4"),
    )
    assert await sent(db, app_id=None, contact_ids=["ana"]) == {"t1", "t2"}
    assert await sent(db, contact_ids=["ana"]) == {"t1"}
    assert await sent(db, "latest", app_id=None, contact_ids=["ana"]) == {"t2"}
    assert await sent(db, app_id=None, emails=["ana@example.com"]) == {"t1", "t3"}
    assert await sent(db, "latest", app_id=None, emails=["ana@example.com"]) == {"t1"}


async def test_a_crash_after_entering_leaves_sends_right_and_redelivery_finishes(
    store: AsyncDatabase[Document], settings: Settings
) -> None:
    db = store
    await register(db, registration("t1", contact_id="ana"))
    first_steps = [
        # A new device entered for ana, never written.
        entries_of({"app_id": APP, "account_id": ACCOUNT, "contact_id": "ana"}),
        # t1 entered for bea, its move never written.
        entries_of({"app_id": APP, "account_id": ACCOUNT, "contact_id": "bea"}),
    ]
    await Directory(db).enter(ident("t0"), first_steps[0])
    await Directory(db).enter(ident("t1"), first_steps[1])

    assert await sent(db, contact_ids=["ana"]) == {"t1"}
    assert await sent(db, contact_ids=["bea"]) == set()
    assert await reach(db, settings, "ana") == {"android": 1}
    assert await reach(db, settings, "bea") == {}

    # Redelivered, the registrations finish; t0's entry is left by its cleanup.
    await register(db, registration("t1", contact_id="bea"))
    await register(db, registration("t0", contact_id="ana"))
    await assert_exact(db)


async def test_a_crash_after_the_write_leaves_sends_right_and_redelivery_leaves(
    store: AsyncDatabase[Document], settings: Settings
) -> None:
    db = store
    await register(db, registration("t1", contact_id="ana", email="ana@example.com"))
    await register(db, registration("t2", contact_id="ana"))

    # t1 moved to bea: entered and written, the crash came before it left ana's entries.
    bea = entries_of({"app_id": APP, "account_id": ACCOUNT, "contact_id": "bea"})
    await Directory(db).enter(ident("t1"), bea)
    await db.devices.update_one(
        {"_id": ident("t1")},
        {"$set": {"contact_id": "bea"}, "$addToSet": {"listed": {"$each": sorted(bea)}}},
    )
    assert await sent(db, contact_ids=["ana"]) == {"t2"}
    assert await sent(db, contact_ids=["bea"]) == {"t1"}
    assert await reach(db, settings, "ana") == {"android": 1}

    # t2 deleted: its departure noted, the device gone, the crash before it left.
    t2 = await db.devices.find_one({"_id": ident("t2")})
    assert t2 is not None
    await Directory(db).departing(ident("t2"), entries_of(t2))
    await db.devices.delete_one({"_id": ident("t2")})
    assert await sent(db, contact_ids=["ana"]) == set()
    assert await reach(db, settings, "ana") == {}

    await register(db, registration("t1", contact_id="bea"))
    assert await apply_cleanup(db, cleanup(token="t2")) == 0
    await assert_exact(db)


async def test_devices_stored_before_the_directory_are_entered_at_start_up(
    db: AsyncDatabase[Document],
) -> None:
    now = utc_now()
    stored = [
        {
            "_id": ident(f"t{i}"),
            "app_id": APP,
            "account_id": ACCOUNT,
            "platform": "android",
            "provider": "fcm",
            "token": f"t{i}",
            "token_hash": hash_token(f"t{i}"),
            "contact_id": f"c{i % 3}",
            "cellphone": f"57300{i % 2}",
            "status": "active",
            "registered_at": now,
        }
        for i in range(10)
    ]
    await db.devices.insert_many(stored)
    await ensure_indexes(db)
    await assert_exact(db, listed=False)
    assert await build_contact_directory(db) == 0  # done once
    assert await sent(db, contact_ids=["c0"]) == {"t0", "t3", "t6", "t9"}

    # Such a device moving to another contact leaves its entries all the same.
    await register(db, registration("t0", contact_id="c1", cellphone="573009"))
    await assert_exact(db, listed=False)
    assert await sent(db, contact_ids=["c0"]) == {"t3", "t6", "t9"}


async def test_an_interrupted_build_goes_on_after_its_last_batch_and_two_builds_agree(
    db: AsyncDatabase[Document], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(directory_module, "BUILD_BATCH", 3)
    devices = [
        {"_id": ident(f"t{i}"), "app_id": APP, "account_id": ACCOUNT, "contact_id": f"c{i}"}
        for i in range(10)
    ]
    await db.devices.insert_many(devices)
    ids = sorted(d["_id"] for d in devices)
    # A run died after entering the devices up to the fifth.
    await db.migrations.insert_one({"_id": "contact_directory", "after": ids[4]})
    assert await build_contact_directory(db) == 5
    entered = {d for e in await db.contact_devices.find({}).to_list(None) for d in e["devices"]}
    assert entered == set(ids[5:])

    await db.migrations.delete_many({})
    await asyncio.gather(build_contact_directory(db), build_contact_directory(db))
    await assert_exact(db, listed=False)
    marker = await db.migrations.find_one({"_id": "contact_directory"})
    assert marker is not None
    assert marker["done"] is True


async def test_an_empty_entry_is_deleted_only_if_unchanged_since_read(
    store: AsyncDatabase[Document],
) -> None:
    db = store
    directory = Directory(db)
    await directory.enter("d1", ["e"])
    read = await db.contact_devices.find_one({"_id": "e"})
    assert read is not None
    await directory.enter("d2", ["e"])
    # What `leave` does for an entry it read empty, had another device entered it since.
    deleted = await db.contact_devices.delete_one({"_id": "e", "v": read["v"]})
    assert deleted.deleted_count == 0
    await directory.leave("d1", ["e"])
    await directory.leave("d2", ["e"])
    assert await db.contact_devices.count_documents({}) == 0
