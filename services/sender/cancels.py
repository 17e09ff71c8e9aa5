"""Which notifications were cancelled, as one sender knows it, by point reads of their
notifications (`_id` `$in`): a notification is read when its first job comes, and the
notifications whose jobs keep coming are read again at most once a second, so a cancel
stops a send's provider calls within about a second.

A notification whose jobs stopped coming is forgotten after FORGET seconds, which keeps
the second-by-second read to the sends under way (a stream of one-device sends adds one
read of its new notifications per provider call, not a growing list to read again).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from pymongo.asynchronous.database import AsyncDatabase

from services.core.store.client import Document
from services.core.store.notifications import NotificationsRepository

# Seconds a cancel may go unseen at most (besides the read itself).
REFRESH = 1.0
# Seconds after its last job that a notification is no longer read again.
FORGET = 10.0


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
        """Which of these notifications are cancelled: those never read before are read
        now, and all that are under way again when the last read is REFRESH seconds old."""
        ids = {i for i in notification_ids if i is not None}
        now = self._clock()
        new = ids - self._seen.keys()
        self._seen.update(dict.fromkeys(ids, now))
        if now - self._read_at >= REFRESH:
            await self._refresh(now)
        elif new:
            self._cancelled |= await self._notifications.cancelled_among(new)
        return self._cancelled & ids

    async def _refresh(self, now: float) -> None:
        async with self._reading:
            if self._read_at >= now:
                return  # another call read them meanwhile
            for notification_id, seen in list(self._seen.items()):
                if now - seen > FORGET:
                    del self._seen[notification_id]
            self._cancelled = await self._notifications.cancelled_among(list(self._seen))
            self._read_at = self._clock()
