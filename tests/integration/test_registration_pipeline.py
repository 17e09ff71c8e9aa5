"""Registrations through the real pipeline: push.registrations -> resolver -> feedback.

Commands are published straight onto the topic, as upstream systems do; the resolver and
feedback run as processes against the real Kafka and store.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import AsyncIterator

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core import topics
from services.core.events import (
    Callback,
    CleanupDevices,
    DeadLetter,
    DeliveryOutcome,
    PushJob,
    RegisterDevice,
    utc_now,
)
from services.core.settings import Settings
from services.core.store.client import Document
from services.core.tokens import hash_token
from tests.integration.kafka_io import eventually, publish, publish_raw, read
from tests.integration.webhook_receiver import Received, Receiver, webhook_receiver

pytestmark = pytest.mark.integration

ACCOUNT = "acc-1"
APP = "app-1"
VERIFYING_APP = "app-verify"


@pytest.fixture
async def apps(db: AsyncDatabase[Document]) -> None:
    now = utc_now()
    common = {
        "account_id": ACCOUNT,
        "name": "App",
        "providers": {"fcm": {"project_id": "p"}},
        "created": now,
        "updated": now,
    }
    await db.apps.insert_many(
        [
            {"_id": APP, **common},
            {"_id": VERIFYING_APP, **common, "settings": {"verify_on_register": True}},
        ]
    )


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with webhook_receiver() as found:
        yield found


def register(**fields: object) -> RegisterDevice:
    values: dict[str, object] = {
        "request_id": f"req-{uuid.uuid4()}",
        "account_id": ACCOUNT,
        "app_id": APP,
        "platform": "android",
        "token": f"fcm-token-{uuid.uuid4()}",
        "contact_id": "contact-1",
        "track": True,
    }
    values.update(fields)
    return RegisterDevice.model_validate(values)


async def send(settings: Settings, command: RegisterDevice | CleanupDevices) -> None:
    token = command.token or ""
    await publish(
        settings,
        topics.REGISTRATIONS,
        topics.device_key(command.app_id, hash_token(token)),
        command,
    )


async def status_of(db: AsyncDatabase[Document], request_id: str) -> Document | None:
    return await db.registrations.find_one({"_id": request_id})


@pytest.mark.usefixtures("workers", "apps")
async def test_a_registration_stores_the_device_and_calls_back_signed(
    settings: Settings, db: AsyncDatabase[Document], receiver: Receiver
) -> None:
    url = f"{receiver.base_url}/hooks/registration"
    signature = base64.b64encode(
        hmac.new(b"api-token", url.encode(), hashlib.sha256).digest()
    ).decode()
    command = register(
        cellphone="573001112233",
        email="ana@example.com",
        callback=Callback(url=url, headers={"X-Tenant": "t-1"}, signature=signature),
        source="cij",
    )
    await send(settings, command)

    status = await eventually(lambda: status_of(db, command.request_id))
    assert status["status"] == "Success"
    assert status["failure_reason"] is None
    device = await db.devices.find_one({"app_id": APP, "token_hash": hash_token(command.token)})
    assert device is not None
    assert device["status"] == "active"
    assert device["provider"] == "fcm"
    assert (device["contact_id"], device["cellphone"], device["email"]) == (
        "contact-1",
        "573001112233",
        "ana@example.com",
    )

    call = await eventually(lambda: _first(receiver))
    assert call.path == "/hooks/registration"
    assert call.body == {"Status": "Success", "Signature": signature, "FailureReason": None}
    assert call.headers["X-Tenant"] == "t-1"


@pytest.mark.usefixtures("workers", "apps")
async def test_failed_registrations_store_only_their_status(
    settings: Settings, db: AsyncDatabase[Document]
) -> None:
    first = register(source="cij")
    await send(settings, first)
    await eventually(lambda: status_of(db, first.request_id))

    duplicate = register(token=first.token, source="cij")
    too_long = register(token="x" * 1025)
    unknown_app = register(app_id="no-such-app")
    foreign_app = register(account_id="someone-else")
    for command in (duplicate, too_long, unknown_app, foreign_app):
        await send(settings, command)

    expected = {
        duplicate.request_id: "DuplicateExists",
        too_long.request_id: "DeviceTokenTooLong",
        unknown_app.request_id: "FailedToStoreDevice",
        foreign_app.request_id: "FailedToStoreDevice",
    }
    for request_id, reason in expected.items():
        status = await eventually(lambda rid=request_id: status_of(db, rid))  # type: ignore[misc]
        assert (status["status"], status["failure_reason"]) == ("Failed", reason)
    assert await db.devices.count_documents({}) == 1


@pytest.mark.usefixtures("workers", "apps")
async def test_re_registering_refreshes_the_device_outside_customer_insights(
    settings: Settings, db: AsyncDatabase[Document]
) -> None:
    first = register(source="native")
    await send(settings, first)
    await eventually(lambda: status_of(db, first.request_id))
    await db.devices.update_one({}, {"$set": {"status": "invalid", "invalid_reason": "x"}})

    again = register(token=first.token, contact_id="contact-2", source="native")
    await send(settings, again)
    status = await eventually(lambda: status_of(db, again.request_id))
    assert status["status"] == "Success"
    device = await db.devices.find_one({})
    assert device is not None
    assert (device["status"], device["invalid_reason"], device["contact_id"]) == (
        "active",
        None,
        "contact-2",
    )
    assert await db.devices.count_documents({}) == 1


@pytest.mark.usefixtures("workers", "apps")
async def test_verify_on_register_waits_for_the_providers_answer(
    settings: Settings, db: AsyncDatabase[Document]
) -> None:
    good = register(app_id=VERIFYING_APP)
    bad = register(app_id=VERIFYING_APP)
    await send(settings, good)
    await send(settings, bad)

    jobs = {}
    for command in (good, bad):
        job = await read(
            settings,
            topics.JOB_TOPICS["fcm"],
            lambda m, c=command: (
                isinstance(m, PushJob)  # type: ignore[misc]
                and m.registration is not None
                and m.registration.request_id == c.request_id
            ),
        )
        assert isinstance(job, PushJob)
        assert (job.kind, job.token, job.provider) == ("verify", command.token, "fcm")
        jobs[command.request_id] = job
    assert await status_of(db, good.request_id) is None

    # What the sender answers for each validate-only send.
    for command, outcome in ((good, "success"), (bad, "invalid_token")):
        job = jobs[command.request_id]
        await publish(
            settings,
            topics.FEEDBACK,
            topics.device_key(job.app_id, job.token_hash),
            DeliveryOutcome(
                kind="verify",
                registration=command,
                app_id=job.app_id,
                provider="fcm",
                token_hash=job.token_hash,
                outcome=outcome,
                reason=None if outcome == "success" else "UNREGISTERED",
                accepted_at=job.accepted_at,
            ),
        )
    good_status = await eventually(lambda: status_of(db, good.request_id))
    bad_status = await eventually(lambda: status_of(db, bad.request_id))
    assert good_status["status"] == "Success"
    assert (bad_status["status"], bad_status["failure_reason"]) == (
        "Failed",
        "DryRunSendingFailed",
    )
    tokens = [d["token"] async for d in db.devices.find({})]
    assert tokens == [good.token]


@pytest.mark.usefixtures("workers", "apps")
async def test_cleanup_removes_a_contacts_devices_of_that_app_only(
    settings: Settings, db: AsyncDatabase[Document]
) -> None:
    kept = register(contact_id="contact-9")
    removed = [register(contact_id="contact-1") for _ in range(2)]
    for command in (kept, *removed):
        await send(settings, command)
    await eventually(
        lambda: _count(db, {"app_id": APP}, 3)  # all three stored
    )
    cleanup = CleanupDevices(
        request_id="clean-1", account_id=ACCOUNT, app_id=APP, contact_id="contact-1"
    )
    await send(settings, cleanup)
    await eventually(lambda: _count(db, {"app_id": APP}, 1))
    remaining = await db.devices.find_one({})
    assert remaining is not None
    assert remaining["contact_id"] == "contact-9"


@pytest.mark.usefixtures("workers", "apps")
async def test_webhooks_are_retried_after_a_server_error(
    settings: Settings, db: AsyncDatabase[Document], receiver: Receiver
) -> None:
    receiver.answers = [503, 500]
    command = register(callback=Callback(url=f"{receiver.base_url}/retry"))
    await send(settings, command)
    await eventually(lambda: _calls(receiver, 3))
    assert [c.body["Status"] for c in receiver.calls] == ["Success"] * 3


@pytest.mark.usefixtures("workers")
async def test_unreadable_commands_go_to_the_dead_letter_topic(settings: Settings) -> None:
    await publish_raw(settings, topics.REGISTRATIONS, b"bad-key", b'{"type": "register"}')
    letter = await read(
        settings, topics.DLQ, lambda m: isinstance(m, DeadLetter) and m.key == "bad-key"
    )
    assert isinstance(letter, DeadLetter)
    assert letter.topic == "push.registrations"
    assert "request_id" in letter.error


async def _first(receiver: Receiver) -> Received | None:
    return receiver.calls[0] if receiver.calls else None


async def _calls(receiver: Receiver, count: int) -> bool:
    return len(receiver.calls) >= count


async def _count(db: AsyncDatabase[Document], query: Document, expected: int) -> bool:
    return await db.devices.count_documents(query) == expected
