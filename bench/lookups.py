"""`python -m bench.lookups [--devices N] [--runs R]`: how long one contact's lookups take.

Against the store only (no Kafka, no services): a database of its own, N devices
bulk-inserted as `bench.harness.audience` makes them (groups of GROUP devices sharing a
contact id, a cellphone and an email) under an app of an account that has a second app,
then the start-up work (`ensure_indexes`, which enters stored devices in the contact
directory), then, in this process, each lookup R times (the median is reported):
reachability of one contact, the fan-out of a send to one contact id / cellphone / email
(and to one contact with `send_to` latest; all jobs produced), Masiv's account-wide raw
tokens, a cleanup of one contact, and feedback's registration of a device (again with the
same contact, and moving to another). The database is dropped afterwards. Runs against
whichever `services` is imported, so the same script measures an older checkout
(`PYTHONPATH=<its tree>`).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pymongo import AsyncMongoClient

from bench.harness import ACCOUNT, APP, GROUP, LOAD_BATCH, audience
from services.core.events import (
    Audience,
    CleanupDevices,
    Content,
    Options,
    RegisterDevice,
    SendRequest,
    SendTo,
)
from services.core.settings import Settings
from services.core.store.client import Document
from services.core.store.devices import DevicesRepository
from services.core.store.indexes import ensure_indexes
from services.core.tokens import hash_token
from services.ingest.sending import Sends
from services.resolver import registrations
from services.resolver.fanout import expand
from services.sandbox.emulators import WebPushEmulator

OTHER_APP = "bench-app-2"
# Before the contact directory, feedback applied a contact-wide cleanup as it came.
split = getattr(registrations, "device_cleanups", None)


def _request(
    to: dict[str, Any], *, app_id: str | None = APP, send_to: SendTo | None = None
) -> SendRequest:
    return SendRequest(
        notification_id=f"bench-{uuid.uuid4()}",
        account_id=ACCOUNT,
        app_id=app_id,
        to=Audience.model_validate(to),
        notification=Content(title="Benchmark", body="One contact"),
        options=Options(send_to=send_to),
    )


async def _timed(runs: int, call: Callable[[int], Awaitable[object]]) -> tuple[float, object]:
    """The median milliseconds of `runs` calls (each given its run number), and what the
    last one returned."""
    took, result = [], None
    for run in range(runs):
        started = time.perf_counter()
        result = await call(run)
        took.append((time.perf_counter() - started) * 1000)
    return statistics.median(took), result


async def measure(devices: int, runs: int) -> list[tuple[str, float, object]]:
    settings = Settings()
    root = settings.mongodb_uri.partition("?")[0].rsplit("/", 1)[0]
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        f"{root}/bench_lookups_{uuid.uuid4().hex[:10]}", tz_aware=True
    )
    db = client.get_default_database()
    rows: list[tuple[str, float, object]] = []
    try:
        await db.apps.insert_many(
            [{"_id": app, "account_id": ACCOUNT, "name": app} for app in (APP, OTHER_APP)]
        )
        started = time.perf_counter()
        batch: list[Document] = []
        tokens: list[str] = []
        for device in audience(devices, ("fcm", "apns"), WebPushEmulator(record_limit=1)):
            batch.append(device)
            if len(tokens) < 3:
                tokens.append(device["token"])
            if len(batch) == LOAD_BATCH:
                await db.devices.insert_many(batch, ordered=False)
                batch = []
        if batch:
            await db.devices.insert_many(batch, ordered=False)
        rows.append((f"load {devices:,} devices", (time.perf_counter() - started) * 1000, ""))
        started = time.perf_counter()
        await ensure_indexes(db)
        rows.append(("start-up (indexes, directory)", (time.perf_counter() - started) * 1000, ""))

        sends = Sends(db, None, settings)  # reads only: no producer
        # Before the directory, `reachability` took no account id.
        with_account = len(inspect.signature(sends.reachability).parameters) == 3

        async def reachable(run: int) -> int:
            contact = f"contact-{run + 1}"
            found = await (
                sends.reachability(ACCOUNT, APP, contact)
                if with_account
                else sends.reachability(APP, contact)  # type: ignore[call-arg]
            )
            return sum(int(str(p["active"])) + int(str(p["invalid"])) for p in found.values())

        ms, result = await _timed(runs, reachable)
        rows.append(("reachability, one contact", ms, f"{result} devices"))

        async def jobs(request: SendRequest) -> int:
            return len([job async for job in expand(request, db)])

        groups = devices // GROUP
        cases: list[tuple[str, Callable[[int], SendRequest]]] = [
            ("send to one contact id", lambda g: _request({"contact_ids": [f"contact-{g}"]})),
            ("send to one cellphone", lambda g: _request({"cellphones": [f"57300{g:07d}"]})),
            ("send to one email", lambda g: _request({"emails": [f"user{g}@bench.example"]})),
            (
                "send to one contact id, latest",
                lambda g: _request({"contact_ids": [f"contact-{g}"]}, send_to="latest"),
            ),
            (
                "Masiv: 3 raw tokens, account-wide",
                lambda g: _request({"tokens": tokens, "tokens_from": "account"}, app_id=None),
            ),
        ]
        for name, build in cases:
            ms, result = await _timed(runs, lambda run, b=build: jobs(b(groups // 2 + run)))  # type: ignore[misc]
            rows.append((name, ms, f"{result} jobs"))

        repository = DevicesRepository(db)

        async def cleanup(run: int) -> int:
            command = CleanupDevices(
                request_id=f"bench-{run}",
                account_id=ACCOUNT,
                app_id=APP,
                contact_id=f"contact-{groups - 1 - run}",
            )
            if split is None:
                return await repository.clean_up(command)
            # As the pipeline applies it: one cleanup per device of the contact.
            return sum([await repository.clean_up(c) async for c in split(command, db)])

        ms, result = await _timed(runs, cleanup)
        rows.append(("cleanup of one contact (resolver + feedback)", ms, f"{result} deleted"))

        def registration(run: int, contact: str) -> RegisterDevice:
            return RegisterDevice(
                request_id=f"bench-{run}",
                account_id=ACCOUNT,
                app_id=APP,
                platform="android",
                token=f"bench-fcm-{run * 2}",
                contact_id=contact,
                source="kafka",
            )

        async def register(command: RegisterDevice) -> None:
            await repository.register(command, "fcm", hash_token(command.token))

        times = max(runs, 20)
        ms, _ = await _timed(times, lambda run: register(registration(run, f"contact-{run // 50}")))
        rows.append(("register again, same contact (feedback)", ms, ""))
        ms, _ = await _timed(times, lambda run: register(registration(run, f"moved-{run}")))
        rows.append(("register, device moves to another contact (feedback)", ms, ""))
    finally:
        await client.drop_database(db.name)
        await client.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.lookups")
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rows = asyncio.run(measure(args.devices, args.runs))
    print(f"| {args.devices:,} devices | ms (median of {args.runs}) | result |")
    print("|---|---|---|")
    for name, ms, result in rows:
        print(f"| {name} | {ms:,.1f} | {result} |")


if __name__ == "__main__":
    main()
