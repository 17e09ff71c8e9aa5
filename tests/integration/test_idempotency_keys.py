"""Idempotency keys in the real store: a key names the first request's notification for the
window, a claim past the window is replaced, and a key claimed before bodies were kept
names its notification without a fingerprint."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core.events import utc_now
from services.core.store.client import Document
from services.core.store.idempotency import Claim, IdempotencyKeys, key_id

pytestmark = pytest.mark.integration

DAY = timedelta(hours=24)


async def test_a_claimed_key_names_the_first_request_within_the_window(
    db: AsyncDatabase[Document],
) -> None:
    keys = IdempotencyKeys(db)
    key = key_id("acct-1", "key-1")
    assert await keys.claim(key, "n-1", "body-1", window=DAY) is None
    assert await keys.claim(key, "n-2", "body-2", window=DAY) == Claim("n-1", "body-1")
    # Another account's key of the same text is its own.
    assert await keys.claim(key_id("acct-2", "key-1"), "n-3", "body-1", window=DAY) is None


async def test_a_claim_past_the_window_is_replaced(db: AsyncDatabase[Document]) -> None:
    keys = IdempotencyKeys(db)
    key = key_id("acct-1", "key-1")
    assert await keys.claim(key, "n-1", "body-1", window=DAY) is None
    assert await keys.claim(key, "n-2", "body-2", window=timedelta(0)) is None
    assert await keys.claim(key, "n-3", "body-3", window=DAY) == Claim("n-2", "body-2")
    assert await db.idempotency.count_documents({}) == 1


async def test_a_key_claimed_before_fingerprints_has_none(db: AsyncDatabase[Document]) -> None:
    key = key_id("acct-1", "key-1")
    await db.idempotency.insert_one({"_id": key, "notification_id": "n-1", "created": utc_now()})
    claim = await IdempotencyKeys(db).claim(key, "n-2", "body-2", window=DAY)
    assert claim == Claim("n-1", None)
