"""Dispatching a provider topic's jobs: batches, concurrency, copies, revocation, retries.

A batch is sent in provider calls (`delivery.Calls`), one after another, and each call's
outcomes are published before the next (`outcomes.Outcomes`). A job's send is never on the
wire twice from this process, and a revocation lets no call start for the jobs of the
revoked partitions. Retries wait in this process, not in the partition: later jobs keep
flowing while a throttled one sleeps, and Faust commits an offset only when every job
before it is acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

import pydantic
from pymongo.asynchronous.database import AsyncDatabase

from services.core import metrics, topics
from services.core.events import PriorityLane, PushJob
from services.core.fields import ProviderName
from services.core.kafka import decode
from services.core.outages import until_done
from services.core.providers.base import Result
from services.core.store.client import Document
from services.sender.cancels import Cancellations
from services.sender.delivery import Calls, Providers, RetryPolicy, next_attempt
from services.sender.jobs import Ack, Delivery
from services.sender.lanes import LaneSlots
from services.sender.outcomes import Call, Outcomes, Publish

log = logging.getLogger(__name__)

# Jobs per provider call. A batch goes out in calls of this size, one after another, each
# marked as soon as it returns, so a sender holds at most `concurrency` x CALL_SIZE sends
# on the wire: what a killed sender makes again. (One call per batch of 500 reached 12%
# of 5,000 devices twice after four kills; calls of 50, up to 0.8% of 20,000.)
CALL_SIZE = 20

# The longest a revocation waits for the provider calls on the wire to be marked: past it,
# the partitions' next owner may make those sends again (as `repeated`).
REVOKE_WAIT = 15.0


class Dispatcher:
    """Sends the jobs of one provider topic: the provider's job topic of one lane.

    The sender's two dispatchers of a provider share its concurrency slots (`slots`); a
    dispatcher given none has `concurrency` slots of its own.
    """

    def __init__(
        self,
        provider: ProviderName,
        providers: Providers,
        publish: Publish,
        db: AsyncDatabase[Document],
        *,
        policy: RetryPolicy | None = None,
        concurrency: int = 8,
        max_waiting: int = 10_000,
        stopping: Callable[[], bool] = lambda: False,
        lane: PriorityLane = "transactional",
        slots: LaneSlots | None = None,
    ) -> None:
        self.provider = provider
        self.lane: PriorityLane = lane
        self.topic = topics.LANE_TOPICS[lane][provider]
        self.policy = policy or RetryPolicy()
        self._outcomes = Outcomes(provider, self.topic, publish, self.policy.attempts)
        self._calls = Calls(provider, providers, db, self._outcomes, stopping)
        self._cancellations = Cancellations(db)
        self._slots = slots or LaneSlots(concurrency)
        self._waiting = asyncio.Semaphore(max_waiting)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = stopping
        # Sends on the wire from this process, by send id: done when marked.
        self._wire: dict[str, asyncio.Future[None]] = {}
        # Jobs taken in this generation or before belong to revoked partitions.
        self._revoked_through = -1
        # Bound to this provider once: a `labels()` lookup per job showed in profiles.
        self._in_flight = metrics.SENDER_IN_FLIGHT.labels(provider, lane)
        self._taken = metrics.SENDER_JOBS.labels(provider, lane)

    async def dispatch(
        self, messages: Sequence[tuple[bytes | None, bytes, Ack]], generation: int = 0
    ) -> None:
        """Start delivering a batch taken in consumer group `generation`; returns once a
        concurrency slot has taken it.

        Waiting for a slot is the back pressure: the agent stops pulling from Kafka while
        every slot is busy (for a bulk batch: while a transactional one waits, or only the
        slots kept for transactional batches are free, see `LaneSlots`).
        """
        deliveries: list[Delivery] = []
        for key, value, ack in messages:
            try:
                job = decode(self.topic, value)
            except pydantic.ValidationError as exc:
                await self._outcomes.unreadable(key, value, str(exc))
                await ack()
                continue
            assert isinstance(job, PushJob)
            deliveries.append(Delivery(key, job, ack, generation))
        if not deliveries:
            return
        self._taken.inc(len(deliveries))
        await self._slots.acquire(self.lane)
        self._in_flight.inc(len(deliveries))
        self._spawn(self._deliver(deliveries))

    async def revoke(self, generation: int) -> None:
        """The partitions are being revoked: no provider call starts any more for the jobs
        taken in `generation` or before, and this waits (up to REVOKE_WAIT) until the calls
        on the wire are marked. Those jobs' rest stays unacknowledged for the next owner."""
        self._revoked_through = max(self._revoked_through, generation)
        if self._wire:
            await asyncio.wait(list(self._wire.values()), timeout=REVOKE_WAIT)

    async def drain(self) -> None:
        """Wait for every batch and retry in flight (on shutdown and in tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, deliveries: list[Delivery]) -> None:
        try:
            # A batch that meets an outage before its provider call, or while publishing,
            # is taken again whole: marked jobs are not sent again.
            await until_done(lambda: self._send(deliveries), "send", self._stopping)
        except Exception:
            # Unacknowledged, the jobs come back after a restart; say why loudly.
            log.exception("a batch of jobs failed unexpectedly", extra={"jobs": len(deliveries)})
        finally:
            self._in_flight.dec(len(deliveries))
            self._slots.release()

    async def _send(self, deliveries: list[Delivery]) -> None:
        acks: list[asyncio.Task[None]] = []
        try:
            ended, unsent = await self._calls.ended_earlier(deliveries)
            for start in range(0, len(ended), CALL_SIZE):
                acks.append(await self._settle(Call(ended[start : start + CALL_SIZE], [], [], [])))
            by_app: dict[str, list[Delivery]] = {}
            for delivery in unsent:
                by_app.setdefault(delivery.job.app_id, []).append(delivery)
            for app_id, jobs in by_app.items():
                for start in range(0, len(jobs), CALL_SIZE):
                    group = jobs[start : start + CALL_SIZE]
                    # A fan-out done again (its resolver died) puts each job on its topic
                    # twice: a second job of one send is called after the first.
                    while group:
                        group, copies = split_copies(group)
                        acks.extend(await self._call(app_id, group))
                        group = copies
        finally:
            # Every call's acknowledgement ends before the batch is done or taken again.
            failures = [
                r for r in await asyncio.gather(*acks, return_exceptions=True) if r is not None
            ]
        if failures:
            raise failures[0]

    async def _call(self, app_id: str, group: list[Delivery]) -> list[asyncio.Task[None]]:
        """One provider call with its outcomes published, unless its jobs' partitions were
        revoked; returns the acknowledgements of its jobs, which end once they are on Kafka.

        The jobs of a cancelled notification are not called: they end `cancelled`. A job
        whose send this process has on the wire already waits for that send to end first:
        a copy of it may come while the first is being sent.
        """
        if group[0].generation <= self._revoked_through:
            return []
        acks: list[asyncio.Task[None]] = []
        cancelled = await self._cancellations.among(d.job.notification_id for d in group)
        if cancelled:
            dropped = [
                d for d in group if d.send is not None and d.job.notification_id in cancelled
            ]
            group = [d for d in group if d.send is None or d.job.notification_id not in cancelled]
            if dropped:
                acks.append(await self._settle(self._outcomes.cancelled(dropped)))
        ids = [d.send for d in group if d.send is not None]

        def gone() -> bool:
            return self._stopping() or group[0].generation <= self._revoked_through

        # The provider's quota is waited for off the wire: a revocation or a stop ends it.
        if group and not await self._calls.admit(app_id, group, gone):
            return acks
        while on_the_wire := [self._wire[i] for i in ids if i in self._wire]:
            await asyncio.wait(on_the_wire)
        if not group or group[0].generation <= self._revoked_through:
            return acks
        # Claimed with no await since the check: no other batch of this process sends them.
        sending = {i: asyncio.get_running_loop().create_future() for i in ids}
        self._wire.update(sending)
        try:
            call = await self._calls.make(app_id, group, ids)
        finally:
            for send, ended in sending.items():
                ended.set_result(None)
                del self._wire[send]
        acks.append(await self._settle(call))
        return acks

    async def _settle(self, call: Call) -> asyncio.Task[None]:
        settled = await self._outcomes.settle(call)
        for delivery, result in settled.retries:
            # Bounded: when too many jobs wait for a retry, this batch waits too.
            await self._waiting.acquire()
            self._in_flight.inc()
            self._spawn(self._retry_later(delivery, result))
        return settled.acknowledged

    async def _retry_later(self, delivery: Delivery, result: Result) -> None:
        # Retries take no concurrency slot: a slot may be held by a batch that waits for
        # room among the retries.
        try:
            await asyncio.sleep(self.policy.delay(delivery.job.attempt, result.retry_after))
            retried = next_attempt(delivery, result)
            await until_done(lambda: self._send([retried]), "send", self._stopping)
        except Exception:
            log.exception("a retry failed unexpectedly")
        finally:
            self._in_flight.dec()
            self._waiting.release()


def split_copies(group: list[Delivery]) -> tuple[list[Delivery], list[Delivery]]:
    """The group without its second jobs of one send, and those second jobs."""
    firsts: dict[str, Delivery] = {}
    copies: list[Delivery] = []
    for delivery in group:
        if delivery.send is None:
            firsts[str(id(delivery))] = delivery
        elif delivery.send in firsts:
            copies.append(delivery)
        else:
            firsts[delivery.send] = delivery
    return list(firsts.values()), copies
