"""Feedback's counters against the real store: every ended send counts once, whether its
outcome comes again (redelivery), its device is answered twice (a duplicate send), or the
worker that recorded it died before counting it; so does every interaction."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client import REGISTRY
from pymongo.asynchronous.database import AsyncDatabase

from services.core.events import DeliveryOutcome, FanoutCompleted, Interaction, utc_now
from services.core.store.client import Document
from services.core.store.notifications import NotificationsRepository
from services.feedback.deliveries import apply_interactions, apply_outcomes

pytestmark = pytest.mark.integration

NOTIFICATION = "n-counting"


def outcome(index: int, **more: object) -> DeliveryOutcome:
    return DeliveryOutcome.model_validate(
        {
            "notification_id": NOTIFICATION,
            "app_id": "app",
            "provider": "apns",
            "platform": "ios",
            "token_hash": f"h{index}",
            "outcome": "success",
            "accepted_at": utc_now(),
            **more,
        }
    )


def duplicates() -> float:
    return (
        REGISTRY.get_sample_value(
            "pushline_sends_total", {"provider": "apns", "outcome": "duplicate"}
        )
        or 0.0
    )


async def notification(db: AsyncDatabase[Document], jobs: int) -> None:
    await db.notifications.insert_one(
        {
            "_id": NOTIFICATION,
            "state": "resolving",
            "counters": {"targeted": 0, "sent": 0, "failed": 0, "invalid": 0},
            "by_platform": {},
        }
    )
    await NotificationsRepository(db).fanout_completed(
        FanoutCompleted(notification_id=NOTIFICATION, jobs=jobs, by_platform={"ios": jobs})
    )


async def test_a_redelivered_outcome_counts_once_and_is_no_duplicate_send(
    db: AsyncDatabase[Document],
) -> None:
    await notification(db, 3)
    outcomes = [outcome(i) for i in range(3)]
    before = duplicates()
    await apply_outcomes(outcomes, db)
    await apply_outcomes(outcomes, db)
    doc = await NotificationsRepository(db).get(NOTIFICATION)
    assert doc is not None
    assert (doc["state"], doc["counters"]["sent"], doc["by_platform"]["ios"]["sent"]) == (
        "done",
        3,
        3,
    )
    assert "counted_batches" not in doc
    assert duplicates() == before


async def test_a_second_provider_answer_is_a_duplicate_send(db: AsyncDatabase[Document]) -> None:
    await notification(db, 1)
    first = outcome(0)
    before = duplicates()
    await apply_outcomes([first], db)
    await apply_outcomes([outcome(0, answered_at=first.answered_at + timedelta(seconds=2))], db)
    doc = await NotificationsRepository(db).get(NOTIFICATION)
    assert doc is not None
    assert doc["counters"]["sent"] == 1
    assert duplicates() == before + 1


async def test_a_repeated_send_is_a_duplicate_send_once(db: AsyncDatabase[Document]) -> None:
    await notification(db, 2)
    outcomes = [outcome(0, repeated=True), outcome(1)]
    before = duplicates()
    await apply_outcomes(outcomes, db)
    await apply_outcomes(outcomes, db)
    doc = await NotificationsRepository(db).get(NOTIFICATION)
    assert doc is not None
    assert (doc["state"], doc["counters"]["sent"]) == ("done", 2)
    assert duplicates() == before + 1


async def test_records_a_dead_worker_never_counted_are_counted_by_their_redelivery(
    db: AsyncDatabase[Document],
) -> None:
    await notification(db, 4)
    outcomes = [outcome(i) for i in range(4)]
    # What a worker killed between its two writes leaves: two records, long ago, in a
    # batch the notification never counted.
    await db.deliveries.insert_many(
        {
            "_id": f"{NOTIFICATION}:{o.token_hash}",
            "notification_id": NOTIFICATION,
            "outcome": "success",
            "platform": "ios",
            "answered_at": o.answered_at,
            "batch": "1000.000:dead",
        }
        for o in outcomes[:2]
    )
    await apply_outcomes(outcomes, db)
    await apply_outcomes(outcomes, db)
    doc = await NotificationsRepository(db).get(NOTIFICATION)
    assert doc is not None
    assert (doc["state"], doc["counters"]["sent"], doc["by_platform"]["ios"]["sent"]) == (
        "done",
        4,
        4,
    )


async def test_a_redelivered_interaction_counts_once(db: AsyncDatabase[Document]) -> None:
    await notification(db, 1)
    opened = Interaction(
        notification_id=NOTIFICATION, app_id="app", token_hash="h0", interaction="opened"
    )
    clicked = opened.model_copy(update={"interaction": "clicked"})
    await apply_interactions([opened], db)
    await apply_interactions([opened, clicked], db)
    await apply_interactions([clicked], db)
    doc = await NotificationsRepository(db).get(NOTIFICATION)
    assert doc is not None
    assert (doc["counters"]["opened"], doc["counters"]["clicked"]) == (1, 1)
