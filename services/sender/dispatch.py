"""Delivery of job batches: provider calls, the retry policy, outcomes, dead letters.

A job's Kafka offset is acknowledged only once its final word (its outcome, or its dead
letter) is on Kafka, so a killed worker loses nothing: unacknowledged jobs come back to the
next owner of their partition. The outcomes of the sends of one provider call go to
`push.feedback` as one message (`DeliveryOutcomes`), and the call's jobs are acknowledged
once it is there. It is keyed by its first outcome's device, so calls spread over the
partitions as their jobs did; the other devices' events may travel on other partitions,
which feedback does not mind (a device is made invalid only if it was not registered again
after the provider's answer, whichever arrives first). A verification's outcome goes
alone, keyed by its device, in order with the device's registration events.

Before each provider call the dispatcher notes its sends (they are on the wire); after it,
it keeps the outcome of each send that reached its device or found it gone, and forgets
the others, which may be made again (`marks`: one store write before the call, one after).
A job that comes back with a kept outcome is not sent again, its outcome is published
again instead (feedback counts it once). A job that comes back noted without a kept
outcome was on the wire when its sender died: it is sent again and its outcome says
`repeated`, the device may have it twice; so is the retry of a send whose request went
unanswered after it may have arrived (a timeout, a reset). Feedback's own records of ended
sends lag behind by however far feedback is behind: checking those alone sent thousands of
jobs twice after a sender was killed during a large send. Retries wait in this process, not in the
partition: later jobs keep flowing while a throttled one sleeps, and Faust commits an
offset only when every job before it is acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Protocol, get_args

import pydantic
from pymongo.asynchronous.database import AsyncDatabase

from services.core import metrics, topics
from services.core.errors import ProviderRejectedError
from services.core.events import (
    DeadLetter,
    DeliveryOutcome,
    DeliveryOutcomes,
    ProviderName,
    PushJob,
    utc_now,
)
from services.core.kafka import decode, encode
from services.core.outages import until_done
from services.core.providers.base import Provider, Result, SendOutcome
from services.core.providers.classify import ErrorClass
from services.core.store.client import Document
from services.core.topics import Topic, device_key
from services.sender.jobs import (
    Ack,
    Delivery,
    RetryPolicy,
    acknowledge,
    describe,
    is_send,
    split_copies,
)
from services.sender.marks import Marks

log = logging.getLogger(__name__)

# Jobs per provider call. A batch goes out in calls of this size, one after another, each
# marked as soon as it returns, so a sender holds at most `concurrency` x CALL_SIZE sends
# on the wire: what a killed sender makes again. (One call per batch of 500 reached 12%
# of 5,000 devices twice after four kills; calls of 50, up to 0.8% of 20,000.)
CALL_SIZE = 20

# The longest a revocation waits for the provider calls on the wire to be marked: past it,
# the partitions' next owner may make those sends again (as `repeated`).
REVOKE_WAIT = 15.0


class Providers(Protocol):
    """Where the dispatcher gets an app's provider (`ProviderCache` in production)."""

    async def get(self, app_id: str, provider: str) -> Provider: ...


Publish = Callable[[Topic, bytes, "pydantic.BaseModel"], Awaitable[Awaitable[object]]]


class Dispatcher:
    """Sends the jobs of one provider topic."""

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
    ) -> None:
        self.provider = provider
        self.topic = topics.JOB_TOPICS[provider]
        self._providers = providers
        self._publish = publish
        self.policy = policy or RetryPolicy()
        self._slots = asyncio.Semaphore(concurrency)
        self._waiting = asyncio.Semaphore(max_waiting)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = stopping
        self._marks = Marks(db)
        # Sends on the wire from this process, by send id: done when marked.
        self._wire: dict[str, asyncio.Future[None]] = {}
        # Jobs taken in this generation or before belong to revoked partitions.
        self._revoked_through = -1
        # Metrics bound to this provider once: a `labels()` lookup per job showed in profiles.
        self._sends = {o: metrics.SENDS.labels(provider, o) for o in get_args(SendOutcome)}
        self._in_flight = metrics.SENDER_IN_FLIGHT.labels(provider)
        self._call_latency = metrics.PROVIDER_LATENCY.labels(provider)
        self._end_to_end = metrics.END_TO_END.labels(provider)
        self._auth_failures = metrics.PROVIDER_AUTH_FAILURES.labels(provider)
        self._dead_letters = metrics.DEAD_LETTERS.labels(self.topic.name)

    async def dispatch(
        self, messages: Sequence[tuple[bytes | None, bytes, Ack]], generation: int = 0
    ) -> None:
        """Start delivering a batch taken in consumer group `generation`; returns once a
        concurrency slot has taken it.

        Waiting for a slot is the back pressure: the agent stops pulling from Kafka while
        every slot is busy.
        """
        deliveries: list[Delivery] = []
        for key, value, ack in messages:
            try:
                job = decode(self.topic, value)
            except pydantic.ValidationError as exc:
                await self._dead_letter(key, value, str(exc), attempts=0, replayable=False)
                await ack()
                continue
            assert isinstance(job, PushJob)
            deliveries.append(Delivery(key, job, ack, generation))
        if not deliveries:
            return
        await self._slots.acquire()
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
            by_app: dict[str, list[Delivery]] = {}
            for delivery in await self._unless_ended_earlier(deliveries, acks):
                by_app.setdefault(delivery.job.app_id, []).append(delivery)
            for app_id, jobs in by_app.items():
                for start in range(0, len(jobs), CALL_SIZE):
                    await self._call_and_settle(app_id, jobs[start : start + CALL_SIZE], acks)
        finally:
            # Every call's acknowledgement ends before the batch is done or taken again.
            failures = [
                r for r in await asyncio.gather(*acks, return_exceptions=True) if r is not None
            ]
        if failures:
            raise failures[0]

    async def _call_and_settle(
        self, app_id: str, group: list[Delivery], acks: list[asyncio.Task[None]]
    ) -> None:
        """One provider call; its sends noted before it and marked as soon as it returns,
        its outcomes published together, its jobs acknowledged once they are on Kafka.

        A job whose send this process has on the wire already waits for that send to end
        first: a fan-out done again (its resolver died) puts each job on its topic twice,
        and the copy may come while the first is being sent.
        """
        group, copies = split_copies(group)
        ids = [d.send for d in group if d.send is not None]
        while on_the_wire := [self._wire[i] for i in ids if i in self._wire]:
            await asyncio.wait(on_the_wire)
        if group[0].generation <= self._revoked_through:
            return
        # Claimed with no await since the check: no other batch of this process sends them.
        sending = {i: asyncio.get_running_loop().create_future() for i in ids}
        self._wire.update(sending)
        try:
            # Noted before: sent by another attempt, which may have ended since the batch
            # began (its outcome is then kept), or died with it on the wire (repeated).
            noted = await self._marks.note(ids)
            kept: list[tuple[Delivery, DeliveryOutcome]] = []
            calling: list[Delivery] = []
            for delivery in group:
                if delivery.send is not None and delivery.send in noted:
                    earlier = noted[delivery.send]
                    if earlier is not None:
                        kept.append((delivery, earlier))
                        continue
                    delivery.repeated = True
                calling.append(delivery)
            results = await self._call(app_id, [d.job for d in calling])
            answered_at = utc_now()
            outcomes = [
                self._outcome(d, r, answered_at) for d, r in zip(calling, results, strict=True)
            ]
            sends = [o for o in outcomes if is_send(o)]
            # After the provider call an outage must not make the batch start over.
            await until_done(lambda: self._marks.settle(sends), "mark", self._stopping)
        finally:
            for send, ended in sending.items():
                ended.set_result(None)
                del self._wire[send]
        await self._settle(calling, results, outcomes, kept, acks)
        if copies:
            await self._call_and_settle(app_id, copies, acks)

    async def _unless_ended_earlier(
        self, deliveries: list[Delivery], acks: list[asyncio.Task[None]]
    ) -> list[Delivery]:
        """The deliveries whose send an earlier version's sender did not end (`Marks`); the
        others are settled with the kept outcome, published again."""
        kept, on_the_wire = await self._marks.earlier_versions(
            [d.send for d in deliveries if d.send is not None]
        )
        if not kept and not on_the_wire:
            return deliveries
        unsent: list[Delivery] = []
        ended: list[tuple[Delivery, DeliveryOutcome]] = []
        for delivery in deliveries:
            if delivery.send is None:
                unsent.append(delivery)
            elif (earlier := kept.get(delivery.send)) is not None:
                ended.append((delivery, earlier))
            else:
                delivery.repeated = delivery.send in on_the_wire
                unsent.append(delivery)
        for start in range(0, len(ended), CALL_SIZE):
            await self._settle([], [], [], ended[start : start + CALL_SIZE], acks)
        return unsent

    async def _call(self, app_id: str, jobs: list[PushJob]) -> list[Result]:
        if not jobs:
            return []
        try:
            provider = await self._providers.get(app_id, self.provider)
        except ProviderRejectedError as exc:
            return [Result.from_error(exc)] * len(jobs)
        started = time.perf_counter()
        results = await provider.send(jobs)
        self._call_latency.observe(time.perf_counter() - started)
        return results

    def _outcome(
        self, delivery: Delivery, result: Result, answered_at: datetime
    ) -> DeliveryOutcome:
        """What the result means for the job: its outcome on `push.feedback`."""
        job = delivery.job
        retry = result.outcome == "retry" and job.attempt + 1 < self.policy.attempts
        return DeliveryOutcome(
            kind=job.kind,
            notification_id=job.notification_id,
            registration=job.registration,
            app_id=job.app_id,
            provider=job.provider,
            platform=job.platform,
            token_hash=job.token_hash,
            outcome="failed" if result.outcome == "retry" and not retry else result.outcome,
            reason=result.reason,
            provider_message_id=result.provider_message_id,
            invalid_since=result.invalid_since,
            repeated=delivery.repeated,
            accepted_at=job.accepted_at,
            answered_at=answered_at,
        )

    async def _settle(
        self,
        called: list[Delivery],
        results: list[Result],
        outcomes: list[DeliveryOutcome],
        kept: list[tuple[Delivery, DeliveryOutcome]],
        acks: list[asyncio.Task[None]],
    ) -> None:
        """Publish the outcomes of one call, and the kept ones of its jobs that ended
        before, as one message (verifications' and invalid tokens' alone); retry, dead-letter and
        acknowledge (once on Kafka) what they say."""
        on_kafka: list[Awaitable[object]] = []
        published = [outcome for _, outcome in kept] + outcomes
        batch = [o for o in published if o.kind == "send" and o.outcome != "invalid_token"]
        if batch:
            key = device_key(batch[0].app_id, batch[0].token_hash)
            message = DeliveryOutcomes(outcomes=batch)
            on_kafka.append(await self._publish(topics.FEEDBACK, key, message))
        for outcome in published:
            if outcome.kind != "send" or outcome.outcome == "invalid_token":
                # What changes the device goes through the device's partition, in order.
                key = device_key(outcome.app_id, outcome.token_hash)
                on_kafka.append(await self._publish(topics.FEEDBACK, key, outcome))
        for name, count in Counter(result.outcome for result in results).items():
            self._sends[name].inc(count)
        settled = [delivery for delivery, _ in kept]
        for delivery, result, outcome in zip(called, results, outcomes, strict=True):
            delivery.history.append(describe(result))
            if result.error_class is ErrorClass.AUTH_CONFIG:
                self._auth_failures.inc()
            if outcome.outcome == "retry":
                # Bounded: when too many jobs wait for a retry, this batch waits too.
                await self._waiting.acquire()
                self._in_flight.inc()
                self._spawn(self._retry_later(delivery, result))
                continue
            self._end_to_end.observe(
                (outcome.answered_at - delivery.job.accepted_at).total_seconds()
            )
            if outcome.outcome == "failed" and result.error_class in (
                ErrorClass.RETRYABLE,
                ErrorClass.QUOTA,
                ErrorClass.AUTH_CONFIG,
            ):
                # Worth another try once the cause is fixed: `pushline dlq replay`.
                on_kafka.append(await self._letter(delivery, result))
            settled.append(delivery)
        if on_kafka:
            acks.append(asyncio.ensure_future(acknowledge(on_kafka, settled)))

    async def _retry_later(self, delivery: Delivery, result: Result) -> None:
        # Retries take no concurrency slot: a slot may be held by a batch that waits for
        # room among the retries.
        try:
            await asyncio.sleep(self.policy.delay(delivery.job.attempt, result.retry_after))
            retried = Delivery(
                delivery.key,
                delivery.job.model_copy(update={"attempt": delivery.job.attempt + 1}),
                delivery.ack,
                delivery.generation,
                delivery.history,
                # The device may have it already: from the send before this one, whose
                # request may have arrived without an answer, or from an earlier sender.
                repeated=delivery.repeated or result.maybe_delivered,
            )
            await until_done(lambda: self._send([retried]), "send", self._stopping)
        except Exception:
            log.exception("a retry failed unexpectedly")
        finally:
            self._in_flight.dec()
            self._waiting.release()

    async def _letter(self, delivery: Delivery, result: Result) -> Awaitable[object]:
        letter = DeadLetter(
            topic=self.topic.name,
            key=delivery.key.decode(errors="replace") if delivery.key else None,
            value=encode(delivery.job.model_copy(update={"attempt": 0})).decode(),
            error="; ".join(delivery.history)[:2000],
            attempts=delivery.job.attempt + 1,
            app_id=delivery.job.app_id,
            reason=result.reason,
            replayable=True,
        )
        self._dead_letters.inc()
        return await self._publish(topics.DLQ, delivery.key or b"", letter)

    async def _dead_letter(
        self, key: bytes | None, value: bytes, error: str, *, attempts: int, replayable: bool
    ) -> None:
        letter = DeadLetter(
            topic=self.topic.name,
            key=key.decode(errors="replace") if key else None,
            value=value.decode(errors="replace"),
            error=error[:2000],
            attempts=attempts,
            replayable=replayable,
        )
        self._dead_letters.inc()
        await (await self._publish(topics.DLQ, key or b"", letter))
