"""The sender's marks on the real store: a note before each call, the outcome kept after
it for a send that ended, the note removed for one that may be made again; and the marks of
an earlier version's sender."""

from __future__ import annotations

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core.events import DeliveryOutcome, Outcome, utc_now
from services.core.kafka import encode
from services.core.store.client import Document
from services.core.store.deliveries import send_id
from services.core.store.marks import Marks

pytestmark = pytest.mark.integration


def outcome(device: str, result: Outcome) -> DeliveryOutcome:
    return DeliveryOutcome(
        notification_id="n",
        app_id="app",
        provider="apns",
        token_hash=device,
        outcome=result,
        accepted_at=utc_now(),
    )


async def test_a_send_noted_twice_is_known_by_its_kept_outcome_or_as_on_the_wire(
    db: AsyncDatabase[Document],
) -> None:
    marks = Marks(db)
    ids = [send_id("n", device) for device in ("a", "b", "c")]
    assert await marks.note(ids) == {}
    delivered, gone = outcome("a", "success"), outcome("b", "invalid_token")
    await marks.settle([delivered, gone, outcome("c", "retry")])
    # Ended sends keep their outcome; a retried one's note is gone, so it is fresh again.
    assert await marks.note(ids) == {ids[0]: delivered, ids[1]: gone}
    # Noted and never settled: its sender died with it on the wire.
    assert await marks.note([ids[2]]) == {ids[2]: None}
    # Its request went unanswered: it may have arrived, so it stays as on the wire.
    await marks.settle([outcome("c", "retry")], unanswered={ids[2]})
    assert await marks.note([ids[2]]) == {ids[2]: None}


async def test_an_earlier_version_s_marks_are_read_while_they_last(
    db: AsyncDatabase[Document],
) -> None:
    ended, on_the_wire, unknown = (send_id("n", device) for device in ("a", "b", "c"))
    kept = outcome("a", "success")
    await db.sending.insert_many([{"_id": ended}, {"_id": on_the_wire}])
    await db.sends.insert_one({"_id": ended, "outcome": encode(kept).decode()})
    found = await Marks(db).earlier_versions([ended, on_the_wire, unknown])
    assert found == ({ended: kept}, {on_the_wire})
    # Once retention has emptied them, nothing is found.
    await db.sending.delete_many({})
    assert await Marks(db).earlier_versions([ended]) == ({}, set())
