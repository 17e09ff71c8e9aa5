"""Which notifications were cancelled, as one sender knows it: the notifications of the
jobs it took lately, read again from the store at most once a second (one read by `_id`),
so a cancel stops its provider calls within about a second."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from pymongo.asynchronous.database import AsyncDatabase

from services.core.store.client import Document
from services.core.store.notifications import NotificationsRepository

# Seconds a cancel may go unseen at most (besides the read itself).
REFRESH = 1.0
# A notification no job was taken for in this many seconds is no longer read.
FORGET = 600.0


class Cancellations:
    """The cancelled notifications among those whose jobs this sender takes."""

    def __init__(
        self, db: AsyncDatabase[Document], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._notifications = NotificationsRepository(db)
        self._clock = clock
        # Notification id -> when a job of it was last taken.
        self._seen: dict[str, float] = {}
        self._cancelled: set[str] = set()
        self._read_at = -REFRESH
        self._reading = asyncio.Lock()

    async def among(self, notification_ids: Iterable[str | None]) -> set[str]:
        """Which of these notifications are cancelled, read again from the store when the
        last read is over REFRESH seconds old or one of them was never read."""
        ids = {i for i in notification_ids if i is not None}
        now = self._clock()
        new = not ids <= self._seen.keys()
        self._seen.update(dict.fromkeys(ids, now))
        if new or now - self._read_at >= REFRESH:
            await self._refresh(now)
        return self._cancelled & ids

    async def _refresh(self, now: float) -> None:
        async with self._reading:
            if self._read_at >= now:
                return  # another batch read it meanwhile
            for notification_id, seen in list(self._seen.items()):
                if now - seen > FORGET:
                    del self._seen[notification_id]
            self._cancelled = await self._notifications.cancelled_among(list(self._seen))
            self._read_at = self._clock()
