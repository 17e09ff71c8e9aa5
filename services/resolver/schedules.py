"""Scheduled sends: a request whose `send_at` is ahead is kept in the store (its
notification `scheduled`, and a `schedules` document) and acknowledged; the due-send loop
of every resolver starts the due ones.

Starting one puts the request back on `push.send-requests` without its `send_at`, so the
resolver fans it out as any other (checkpoints, resumption, one counted outcome per
device). Each start is leased (services.core.store.schedules): one resolver at a time; a
resolver killed while starting one leaves a lease that expires, and another starts it. A
start repeated that way puts the request on Kafka twice, which resolves like any
redelivered request: the second finds it started, or its jobs end once downstream.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from pydantic import BaseModel
from pymongo.asynchronous.database import AsyncDatabase

from services.core import topics
from services.core.events import SendRequest, utc_now
from services.core.outages import is_outage
from services.core.store.client import Document
from services.core.store.notifications import NotificationsRepository
from services.core.store.schedules import SchedulesRepository
from services.core.topics import Topic, notification_key

log = logging.getLogger(__name__)

# How often each resolver looks for due schedules: a send starts up to this late.
DUE_INTERVAL = 1.0
# How long a claimed schedule is its owner's: far longer than a start takes (two store
# writes and a publish), short enough that a dead owner's schedules start soon after.
LEASE = timedelta(seconds=30)
# Schedules started per round at most; the rest wait for the next round.
PER_ROUND = 200

Publish = Callable[[Topic, bytes, BaseModel], Awaitable[None]]


async def hold(request: SendRequest, db: AsyncDatabase[Document]) -> None:
    """Keep a request whose `send_at` is ahead until then (not when it has moved on:
    cancelled, or started by an earlier delivery of it)."""
    if await NotificationsRepository(db).schedule(request):
        await SchedulesRepository(db).add(request)
        log.info(
            "send request scheduled",
            extra={"notification_id": request.notification_id, "send_at": str(request.send_at)},
        )


class DueSends:
    """One resolver's side of the due-send loop."""

    def __init__(self, db: Callable[[], AsyncDatabase[Document]], publish: Publish) -> None:
        """`db`: the store, once the worker has connected to it."""
        self._db = db
        self._publish = publish
        # This process's leases; a restarted resolver is a new owner.
        self.owner = uuid.uuid4().hex

    async def tick(self) -> None:
        """One round of the loop: an outage is logged and left to the next round."""
        try:
            await self.start_due(utc_now())
        except Exception as exc:
            if not is_outage(exc):
                raise
            log.warning("store or broker unavailable; due sends wait", exc_info=True)

    async def start_due(self, now: datetime) -> int:
        """Start the sends due at `now` that this resolver claims; how many it started."""
        schedules = SchedulesRepository(self._db())
        started = 0
        for notification_id in await schedules.due(now, PER_ROUND):
            request = await schedules.claim(notification_id, self.owner, now, LEASE)
            if request is not None:
                started += await self._start(schedules, request)
        return started

    async def _start(self, schedules: SchedulesRepository, request: SendRequest) -> int:
        notification_id = request.notification_id
        if not await NotificationsRepository(self._db()).release(notification_id):
            # Cancelled (or started already): nothing to send.
            await schedules.remove(notification_id, self.owner)
            return 0
        # Latency is measured from when the send was due, not from when it was accepted.
        due = request.model_copy(update={"send_at": None, "accepted_at": utc_now()})
        await self._publish(topics.SEND_REQUESTS, notification_key(notification_id), due)
        await schedules.remove(notification_id, self.owner)
        log.info("scheduled send started", extra={"notification_id": notification_id})
        return 1
