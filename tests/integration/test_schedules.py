"""Schedules and cancels against the real store and Kafka: two resolvers' due-send loops
never both start one schedule, an expired lease is taken over, a cancelled schedule never
starts, and a sender sees a cancel within a second."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from pydantic import BaseModel
from pymongo.asynchronous.database import AsyncDatabase

from services.core import topics
from services.core.events import Audience, Content, SendRequest, utc_now
from services.core.settings import Settings
from services.core.store.client import Document
from services.core.store.notifications import NotificationsRepository
from services.core.store.schedules import SchedulesRepository
from services.core.topics import Topic
from services.resolver.schedules import LEASE, DueSends, hold
from services.sender.cancels import FORGET, REFRESH, Cancellations
from tests.integration.kafka_io import publish, read_many

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("created_topics")]


def scheduled(ahead: timedelta) -> SendRequest:
    return SendRequest(
        notification_id=f"n-{uuid.uuid4()}",
        account_id="acc",
        app_id="app",
        to=Audience(contact_ids=["ana"]),
        notification=Content(title="Más tarde"),
        send_at=utc_now() + ahead,
    )


class Published:
    """The real publish, remembering what went out."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ids: list[str] = []

    async def __call__(self, topic: Topic, key: bytes, message: BaseModel) -> None:
        assert isinstance(message, SendRequest)
        await publish(self.settings, topic, key, message)
        self.ids.append(message.notification_id)


async def test_two_resolvers_never_both_start_a_schedule(
    settings: Settings, db: AsyncDatabase[Document]
) -> None:
    requests = [scheduled(timedelta(seconds=1)) for _ in range(30)]
    for request in requests:
        await hold(request, db)
    assert await db.schedules.count_documents({}) == 30
    notifications = NotificationsRepository(db)
    assert {(await notifications.get(r.notification_id) or {}).get("state") for r in requests} == {
        "scheduled"
    }
    # Not due yet: nothing starts.
    published = Published(settings)
    first, second = DueSends(lambda: db, published), DueSends(lambda: db, published)
    assert await first.start_due(utc_now()) == 0

    later = utc_now() + timedelta(seconds=2)
    started = await asyncio.gather(
        first.start_due(later), second.start_due(later), first.start_due(later)
    )
    assert sum(started) == 30
    assert sorted(published.ids) == sorted(r.notification_id for r in requests)
    assert await db.schedules.count_documents({}) == 0
    for request in requests:
        assert await notifications.state(request.notification_id) == "accepted"
    # What went on Kafka is the request without its send_at: resolved at once.
    wanted = {r.notification_id for r in requests}
    sent = await read_many(
        settings,
        [topics.SEND_REQUESTS],
        lambda m: isinstance(m, SendRequest) and m.notification_id in wanted,
        30,
    )
    assert all(isinstance(m, SendRequest) and m.send_at is None for m in sent)


async def test_an_expired_lease_is_taken_over(
    settings: Settings, db: AsyncDatabase[Document]
) -> None:
    request = scheduled(timedelta(seconds=1))
    await hold(request, db)
    schedules = SchedulesRepository(db)
    due = utc_now() + timedelta(seconds=2)
    # A resolver claimed it and died before starting it.
    assert await schedules.claim(request.notification_id, "dead", due, LEASE) == request
    published = Published(settings)
    alive = DueSends(lambda: db, published)
    assert await alive.start_due(due + LEASE / 2) == 0
    assert await alive.start_due(due + LEASE + timedelta(seconds=1)) == 1
    assert published.ids == [request.notification_id]


async def test_a_cancelled_schedule_never_starts(
    settings: Settings, db: AsyncDatabase[Document]
) -> None:
    request = scheduled(timedelta(seconds=1))
    await hold(request, db)
    notifications = NotificationsRepository(db)
    cancelled = await notifications.cancel(request.notification_id, "acc")
    assert cancelled is not None
    assert cancelled["state"] == "cancelled"
    assert await db.schedules.count_documents({}) == 0
    # Delivered again, the request is not held again, nor resolved.
    await hold(request, db)
    assert await db.schedules.count_documents({}) == 0
    assert not await notifications.start_resolving(request)
    # A schedule written while the cancel ran (the race) is dropped when due.
    await SchedulesRepository(db).add(request)
    published = Published(settings)
    assert await DueSends(lambda: db, published).start_due(utc_now() + timedelta(seconds=2)) == 0
    assert published.ids == []
    assert await db.schedules.count_documents({}) == 0
    assert await notifications.state(request.notification_id) == "cancelled"
    # Another account's cancel finds nothing.
    assert await notifications.cancel(request.notification_id, "someone-else") is None


async def test_a_sender_sees_a_cancel_within_a_second(db: AsyncDatabase[Document]) -> None:
    now = [0.0]
    cancellations = Cancellations(db, clock=lambda: now[0])
    notifications = NotificationsRepository(db)
    sending, other, late = (scheduled(timedelta(0)) for _ in range(3))
    for request in (sending, other, late):
        assert await notifications.start_resolving(request)
    assert await cancellations.among([sending.notification_id, None]) == set()
    await notifications.cancel(sending.notification_id, "acc")
    await notifications.cancel(late.notification_id, "acc")
    # Read again at most once a second ...
    now[0] = REFRESH / 2
    assert await cancellations.among([sending.notification_id]) == set()
    # ... but a notification never read before is read at once.
    assert await cancellations.among([late.notification_id, other.notification_id]) == {
        late.notification_id
    }
    now[0] = REFRESH * 1.5
    assert await cancellations.among([sending.notification_id, other.notification_id]) == {
        sending.notification_id
    }
    # One whose jobs stopped coming is no longer read; its next job reads it again.
    now[0] = REFRESH * 1.5 + FORGET + 1
    assert await cancellations.among([other.notification_id]) == set()
    await notifications.cancel(other.notification_id, "acc")
    assert await cancellations.among([late.notification_id]) == {late.notification_id}
