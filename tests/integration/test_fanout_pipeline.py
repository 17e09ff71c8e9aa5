"""Send requests through the real pipeline: push.send-requests -> resolver -> jobs, and
delivery outcomes -> feedback -> counters, state and invalid devices."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core import topics
from services.core.events import (
    Audience,
    Content,
    DeliveryOutcome,
    DeliveryOutcomes,
    FanoutCompleted,
    Options,
    PushJob,
    SendRequest,
    utc_now,
)
from services.core.settings import Settings
from services.core.store.client import Document
from services.core.store.devices import device_id
from services.core.store.indexes import ensure_indexes
from services.core.tokens import hash_token
from tests.devices import store_devices
from tests.integration import processes
from tests.integration.kafka_io import eventually, publish, read, read_many

pytestmark = pytest.mark.integration

ACCOUNT = "acc-1"
APP = "app-1"
# Both lanes: `to.all` jobs travel on the bulk topics, the others on the transactional ones.
JOB_TOPICS = [topic for lane in topics.LANE_TOPICS.values() for topic in lane.values()]


def device(token: str, *, platform: str = "android", age: int = 0, **fields: object) -> Document:
    provider = {"android": "fcm", "ios": "apns", "web": "webpush"}[platform]
    registered = utc_now() - timedelta(minutes=age)
    document: Document = {
        "app_id": APP,
        "account_id": ACCOUNT,
        "platform": platform,
        "provider": provider,
        "token": token,
        "token_hash": hash_token(token),
        "status": "active",
        "registered_at": registered,
        "created": registered,
        **fields,
    }
    return {"_id": device_id(document["app_id"], document["token_hash"]), **document}


def request(to: Audience, **options: object) -> SendRequest:
    return SendRequest(
        notification_id=f"n-{uuid.uuid4()}",
        account_id=ACCOUNT,
        app_id=APP,
        to=to,
        notification=Content(title="Hola", body="Tienes un mensaje"),
        data={"campaign": "c1"},
        options=Options.model_validate(options),
    )


async def fan_out(settings: Settings, send: SendRequest) -> tuple[FanoutCompleted, list[PushJob]]:
    await publish(
        settings, topics.SEND_REQUESTS, topics.notification_key(send.notification_id), send
    )
    done = await read(
        settings,
        topics.FEEDBACK,
        lambda m: isinstance(m, FanoutCompleted) and m.notification_id == send.notification_id,
    )
    assert isinstance(done, FanoutCompleted)
    if done.jobs == 0 or done.dry_run:
        return done, []
    jobs = await read_many(
        settings,
        JOB_TOPICS,
        lambda m: isinstance(m, PushJob) and m.notification_id == send.notification_id,
        done.jobs,
    )
    return done, [j for j in jobs if isinstance(j, PushJob)]


@pytest.fixture
async def audience(db: AsyncDatabase[Document]) -> None:
    await ensure_indexes(db)
    await store_devices(
        db,
        [
            device("tok-ana-phone", contact_id="ana", cellphone="573001", age=30),
            device("tok-ana-tablet", contact_id="ana", cellphone="573001", age=10),
            device("tok-ana-web", platform="ios", contact_id="ana", age=20),
            device(
                "tok-ana-old", contact_id="ana", status="invalid", invalid_reason="UNREGISTERED"
            ),
            device("tok-bea", contact_id="bea", email="bea@example.com"),
            device("tok-carl", contact_id="carl", cellphone="573002", email="carl@example.com"),
            device("tok-other-app", contact_id="ana", app_id="app-2"),
            device("tok-other-account", contact_id="ana", account_id="acc-2"),
        ],
    )


@pytest.mark.usefixtures("workers", "audience")
async def test_each_active_device_gets_one_job_across_selectors(settings: Settings) -> None:
    send = request(
        Audience(
            tokens=["tok-carl", "tok-unregistered"],
            contact_ids=["ana", "carl"],
            cellphones=["573001", "573002"],
            emails=["bea@example.com", "carl@example.com"],
        )
    )
    done, jobs = await fan_out(settings, send)
    tokens = sorted(job.token for job in jobs)
    assert tokens == sorted(
        [
            "tok-ana-phone",
            "tok-ana-tablet",
            "tok-ana-web",
            "tok-bea",
            "tok-carl",
            "tok-unregistered",
        ]
    )
    assert done.by_provider == {"fcm": 5, "apns": 1}
    assert done.by_platform == {"android": 5, "ios": 1}
    job = next(j for j in jobs if j.token == "tok-bea")
    assert (job.notification.title, job.data, job.provider) == ("Hola", {"campaign": "c1"}, "fcm")


@pytest.mark.usefixtures("workers", "audience")
async def test_a_long_contact_list_is_matched_in_one_pass_over_the_app(
    settings: Settings,
) -> None:
    unknown = [f"nobody-{index}" for index in range(600)]
    send = request(
        Audience(
            tokens=["tok-carl"],
            contact_ids=["ana", *unknown],
            cellphones=["573002"],
            emails=["bea@example.com"],
            platforms=["android"],
        )
    )
    done, jobs = await fan_out(settings, send)
    # The same devices as by queries: once each, active, of this app, on its platforms.
    assert sorted(job.token for job in jobs) == [
        "tok-ana-phone",
        "tok-ana-tablet",
        "tok-bea",
        "tok-carl",
    ]
    assert done.jobs == 4


@pytest.mark.usefixtures("workers", "audience")
async def test_send_to_latest_and_platform_filter(settings: Settings) -> None:
    _, latest = await fan_out(settings, request(Audience(contact_ids=["ana"]), send_to="latest"))
    assert [j.token for j in latest] == ["tok-ana-tablet"]

    _, ios = await fan_out(settings, request(Audience(contact_ids=["ana"], platforms=["ios"])))
    assert [j.token for j in ios] == ["tok-ana-web"]


@pytest.mark.usefixtures("workers", "audience")
async def test_dry_run_counts_without_jobs(settings: Settings, db: AsyncDatabase[Document]) -> None:
    send = request(Audience(contact_ids=["ana", "bea"]), dry_run=True)
    done, jobs = await fan_out(settings, send)
    assert (done.jobs, done.dry_run, jobs) == (4, True, [])

    async def state() -> Document | None:
        doc = await db.notifications.find_one({"_id": send.notification_id})
        return doc if doc and doc["state"] == "done" else None

    doc = await eventually(state)
    assert doc["counters"]["targeted"] == 4


def answered(send: SendRequest, job: PushJob, result: str, reason: str | None) -> DeliveryOutcome:
    """The outcome a sender publishes for one of the send's jobs."""
    return DeliveryOutcome.model_validate(
        {
            "notification_id": send.notification_id,
            "app_id": APP,
            "provider": job.provider,
            "platform": job.platform,
            "token_hash": job.token_hash,
            "outcome": result,
            "reason": reason,
            "accepted_at": send.accepted_at,
        }
    )


@pytest.mark.usefixtures("workers", "audience")
async def test_outcomes_count_once_and_invalidate_devices(
    settings: Settings, db: AsyncDatabase[Document]
) -> None:
    send = request(Audience(contact_ids=["ana", "bea"]))
    done, jobs = await fan_out(settings, send)
    assert done.jobs == 4
    by_token = {job.token: job for job in jobs}
    answers = {
        "tok-ana-phone": ("success", None),
        "tok-ana-tablet": ("invalid_token", "UNREGISTERED"),
        "tok-ana-web": ("failed", "InternalServerError"),
        "tok-bea": ("success", None),
    }
    outcomes = [
        answered(send, by_token[token], outcome, reason)
        for token, (outcome, reason) in answers.items()
    ]
    # The first outcome arrives twice, as after a sender restart: it counts once.
    for outcome in [outcomes[0], *outcomes]:
        await publish(
            settings, topics.FEEDBACK, topics.device_key(APP, outcome.token_hash), outcome
        )

    async def finished() -> Document | None:
        doc = await db.notifications.find_one({"_id": send.notification_id})
        return doc if doc and doc["state"] == "done" else None

    doc = await eventually(finished)
    counters = doc["counters"]
    assert (counters["targeted"], counters["sent"], counters["invalid"], counters["failed"]) == (
        4,
        2,
        1,
        1,
    )
    assert doc["by_platform"]["android"] == {"targeted": 3, "sent": 2, "invalid": 1}
    phone = await db.devices.find_one({"token": "tok-ana-phone"})
    assert phone is not None
    assert phone["last_success_at"] is not None
    tablet = await db.devices.find_one({"token": "tok-ana-tablet"})
    assert tablet is not None
    assert (tablet["status"], tablet["invalid_reason"]) == ("invalid", "UNREGISTERED")

    # The invalid device gets no more sends.
    _, again = await fan_out(settings, request(Audience(contact_ids=["ana"])))
    assert sorted(j.token for j in again) == ["tok-ana-phone", "tok-ana-web"]


@pytest.mark.usefixtures("workers", "audience")
async def test_a_call_s_outcomes_in_one_message_count_once_beside_single_outcomes(
    settings: Settings, db: AsyncDatabase[Document]
) -> None:
    send = request(Audience(contact_ids=["ana", "bea"]))
    done, jobs = await fan_out(settings, send)
    assert done.jobs == 4
    by_token = {job.token: job for job in jobs}

    def outcome(token: str, result: str, reason: str | None = None) -> DeliveryOutcome:
        return answered(send, by_token[token], result, reason)

    call = DeliveryOutcomes(
        outcomes=[outcome("tok-ana-phone", "success"), outcome("tok-ana-web", "success")]
    )
    # A lost device's outcome travels alone, keyed by its device.
    gone = outcome("tok-ana-tablet", "invalid_token", "UNREGISTERED")
    # As a sender before batches published it (a rolling upgrade): alone.
    single = outcome("tok-bea", "success")
    sent: list[tuple[bytes, DeliveryOutcome | DeliveryOutcomes]] = [
        (topics.device_key(APP, call.outcomes[0].token_hash), call),
        (topics.device_key(APP, gone.token_hash), gone),
        (topics.device_key(APP, single.token_hash), single),
    ]
    # Each arrives twice, as after a sender restart: each outcome counts once.
    for key, message in sent * 2:
        await publish(settings, topics.FEEDBACK, key, message)

    async def finished() -> Document | None:
        doc = await db.notifications.find_one({"_id": send.notification_id})
        return doc if doc and doc["state"] == "done" else None

    doc = await eventually(finished)
    counters = doc["counters"]
    assert (counters["targeted"], counters["sent"], counters["invalid"], counters["failed"]) == (
        4,
        3,
        1,
        0,
    )
    tablet = await db.devices.find_one({"token": "tok-ana-tablet"})
    assert tablet is not None
    assert (tablet["status"], tablet["invalid_reason"]) == ("invalid", "UNREGISTERED")
    reached = await db.devices.count_documents({"last_success_at": {"$ne": None}})
    assert reached == 3


@pytest.mark.usefixtures("workers", "audience")
async def test_an_invalidation_older_than_the_registration_is_ignored(
    settings: Settings, db: AsyncDatabase[Document]
) -> None:
    phone = await db.devices.find_one({"token": "tok-ana-phone"})
    assert phone is not None
    for since, token in ((phone["registered_at"] - timedelta(seconds=5), "tok-ana-phone"),):
        await publish(
            settings,
            topics.FEEDBACK,
            topics.device_key(APP, hash_token(token)),
            DeliveryOutcome(
                app_id=APP,
                provider="apns",
                token_hash=hash_token(token),
                outcome="invalid_token",
                reason="Unregistered",
                invalid_since=since,
                accepted_at=utc_now(),
            ),
        )
    # A later invalidation of another device shows the earlier one was processed.
    await publish(
        settings,
        topics.FEEDBACK,
        topics.device_key(APP, hash_token("tok-bea")),
        DeliveryOutcome(
            app_id=APP,
            provider="fcm",
            token_hash=hash_token("tok-bea"),
            outcome="invalid_token",
            reason="UNREGISTERED",
            accepted_at=utc_now(),
        ),
    )

    async def bea_invalid() -> bool:
        return await db.devices.count_documents({"token": "tok-bea", "status": "invalid"}) == 1

    await eventually(bea_invalid)
    phone = await db.devices.find_one({"token": "tok-ana-phone"})
    assert phone is not None
    assert phone["status"] == "active"


@pytest.mark.usefixtures("workers", "audience")
async def test_to_all_reaches_every_active_device_of_the_app_once(settings: Settings) -> None:
    done, jobs = await fan_out(settings, request(Audience(all=True)))
    assert {job.lane for job in jobs} == {"bulk"}
    # Not the invalid device, not another app's, not another account's.
    assert sorted(job.token for job in jobs) == [
        "tok-ana-phone",
        "tok-ana-tablet",
        "tok-ana-web",
        "tok-bea",
        "tok-carl",
    ]
    assert (done.jobs, done.by_provider, done.by_platform) == (
        5,
        {"fcm": 4, "apns": 1},
        {"android": 4, "ios": 1},
    )


@pytest.mark.usefixtures("workers", "audience")
async def test_to_all_narrowed_by_platform_and_counted_by_a_dry_run(
    settings: Settings, db: AsyncDatabase[Document]
) -> None:
    _, ios = await fan_out(settings, request(Audience(all=True, platforms=["ios"])))
    assert [job.token for job in ios] == ["tok-ana-web"]

    send = request(Audience(all=True, platforms=["android"]), dry_run=True)
    done, jobs = await fan_out(settings, send)
    assert (done.jobs, done.dry_run, done.by_platform, jobs) == (4, True, {"android": 4}, [])

    async def state() -> Document | None:
        doc = await db.notifications.find_one({"_id": send.notification_id})
        return doc if doc and doc["state"] == "done" else None

    assert (await eventually(state))["counters"]["targeted"] == 4


async def test_to_all_reaches_devices_stored_before_ids_were_derived(
    settings: Settings, db: AsyncDatabase[Document], child_env: dict[str, str]
) -> None:
    # Stored by an earlier version: generated ObjectId `_id`s. The resolver moves them to
    # their derived `_id` at start-up, before it takes any request.
    old = [device(f"tok-old-{index}") for index in range(3)]
    await db.devices.insert_many([{k: v for k, v in d.items() if k != "_id"} for d in old])
    port = processes.free_port()
    resolver = processes.Process(
        ["services.cli", "resolver"], {**child_env, "PUSHLINE_METRICS_PORT": str(port)}
    )
    try:
        await resolver.wait_ready(f"http://127.0.0.1:{port}/readyz")
        done, jobs = await fan_out(settings, request(Audience(all=True)))
    finally:
        resolver.close()
    assert sorted(job.token for job in jobs) == ["tok-old-0", "tok-old-1", "tok-old-2"]
    assert done.jobs == 3
