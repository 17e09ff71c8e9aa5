"""Fan-outs paced by their account, and send requests that do not wait for each other.

Each account's fan-outs together produce at most its `notifications_per_second` jobs
(services.core.store.limits), a token per job from a bucket every resolver process shares
(services.core.buckets). A paced fan-out only waits for its own account's tokens: the
resolver takes each send request in a task of its own (`Requests`), so another tenant's
send read after a million-device campaign is resolved at once, beside it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from pymongo.asynchronous.database import AsyncDatabase

from services.core import metrics
from services.core.buckets import Leases, Rate
from services.core.settings import Settings
from services.core.store.buckets import Buckets
from services.core.store.client import Document
from services.core.store.limits import AccountLimits, Limits

# Send requests a resolver process works on at once. Past this many, it takes the next
# one when one ends: so many paced fan-outs at once would hold back every other request.
CONCURRENT = 64


class Pacer:
    """The accounts' notification rates, shared by the resolver processes."""

    def __init__(self, db: AsyncDatabase[Document], settings: Settings) -> None:
        self._limits = AccountLimits(db)
        self._leases = Leases(Buckets(db).claim)
        self._settings = settings

    async def rate(self, account_id: str) -> Rate:
        """The account's notifications per second, read afresh (once per send request)."""
        limits = await self._limits.get(account_id) or Limits()
        return limits.rates(self._settings).notifications

    async def job(self, account_id: str, rate: Rate) -> None:
        """Wait until the account may have another job produced."""
        if await self._leases.take(_key(account_id), rate) == 0:
            return
        metrics.FANOUTS_PACED.inc()
        try:
            waited = await self._leases.wait(_key(account_id), rate)
        finally:
            metrics.FANOUTS_PACED.dec()
        metrics.FANOUT_PACED_SECONDS.inc(waited)


def _key(account_id: str) -> str:
    return f"notifications:{account_id}"


class Requests:
    """Send requests worked on in tasks of their own, at most CONCURRENT at once; requests
    with the same key (a send and its cancel) one after the other, in the order taken."""

    def __init__(
        self,
        crashed: Callable[[BaseException], Awaitable[None]],
        stopping: Callable[[], bool],
    ) -> None:
        """`crashed`: what an unexpected error of a request does (the agent's own errors
        crash the worker; so do these); `stopping`: whether the worker is on its way out,
        when an error is the stop's, not the request's."""
        self._slots = asyncio.Semaphore(CONCURRENT)
        self._crashed = crashed
        self._stopping = stopping
        self._last: dict[bytes | None, asyncio.Task[None]] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def start(
        self,
        key: bytes | None,
        work: Callable[[], Awaitable[None]],
        done: Callable[[], Awaitable[None]],
    ) -> None:
        """Run `work()`, then `done()`, in a task; returns once a slot is free for it."""
        await self._slots.acquire()
        before = self._last.get(key)

        async def run() -> None:
            try:
                if before is not None:
                    await asyncio.wait({before})
                await work()
                await done()
            except Exception as exc:
                if self._stopping():
                    # Cut short by the stop: unacknowledged, it is read again.
                    return
                # Handed to the worker, which stops, as for an error of the agent itself.
                await self._crashed(exc)
            finally:
                self._slots.release()
                if self._last.get(key) is task:
                    del self._last[key]

        task = asyncio.create_task(run())
        self._last[key] = task
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def stop(self) -> None:
        """Cancel what is running (unacknowledged: it is read again, and a fan-out resumed
        from its checkpoint)."""
        running = list(self._running)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
