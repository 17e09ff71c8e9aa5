"""Delivery of job batches: provider calls, the retry policy, outcomes, dead letters.

A job's Kafka offset is acknowledged only once its final word (its outcome, or its dead
letter) is on Kafka, so a killed worker loses nothing: unacknowledged jobs come back to the
next owner of their partition. Before each provider call the dispatcher notes its sends
in `sending` (they are on the wire); after it, it keeps in `sends` the outcome of each
send that reached its device or found it gone, and forgets the others (they may be made
again). A job that comes back with a kept outcome is not sent again, its outcome is
published again instead (feedback counts it once). A job that comes back noted in
`sending` without a kept outcome was on the wire when its sender died: it is sent again
and its outcome says `repeated`, the device may have it twice. Feedback's own records of
ended sends lag behind by however far feedback is behind: checking those alone sent
thousands of jobs twice after a sender was killed during a large send. Retries wait in
this process, not in the partition: later jobs keep flowing while a throttled one sleeps,
and Faust commits an offset only when every job before it is acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import pydantic
from pymongo.asynchronous.database import AsyncDatabase

from services.core import metrics, topics
from services.core.errors import ProviderRejectedError
from services.core.events import DeadLetter, DeliveryOutcome, PushJob
from services.core.kafka import decode, encode
from services.core.outages import until_done
from services.core.providers.base import Provider, Result
from services.core.providers.classify import ErrorClass, ProviderName
from services.core.store.client import Document, insert_new
from services.core.topics import Topic, device_key

log = logging.getLogger(__name__)

# Jobs per provider call. A batch goes out in calls of this size, one after another, each
# marked as soon as it returns, so a sender holds at most `concurrency` x CALL_SIZE sends
# on the wire: what a killed sender makes again. (One call per batch of 500 reached 12%
# of 5,000 devices twice after four kills; calls of 50, up to 0.8% of 20,000.)
CALL_SIZE = 20

# The longest a revocation waits for the provider calls on the wire to be marked: past it,
# the partitions' next owner may make those sends again (as `repeated`).
REVOKE_WAIT = 15.0

# Outcomes after which a send must not be made again: the device has the notification, or
# does not exist. A failed send may be replayed from the dead letter topic.
_ENDED = frozenset({"success", "invalid_token"})


class Providers(Protocol):
    """Where the dispatcher gets an app's provider (`ProviderCache` in production)."""

    async def get(self, app_id: str, provider: str) -> Provider: ...


Publish = Callable[[Topic, bytes, "pydantic.BaseModel"], Awaitable[Awaitable[object]]]
Ack = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, never sooner than the provider's Retry-After."""

    attempts: int = 5
    base: float = 1.0
    cap: float = 300.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt number `attempt + 1` (attempt 0 was the first)."""
        backoff = min(self.cap, self.base * 2.0**attempt) * (0.5 + random.random())  # noqa: S311
        return max(backoff, retry_after or 0.0)


@dataclass
class Delivery:
    """One job on its way: the Kafka message it came in, and what happened so far."""

    key: bytes | None
    job: PushJob
    ack: Ack
    # The consumer group generation the job was taken in (see `Dispatcher.revoke`).
    generation: int = 0
    history: list[str] = field(default_factory=list)


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
        self._db = db
        self.policy = policy or RetryPolicy()
        self._slots = asyncio.Semaphore(concurrency)
        self._waiting = asyncio.Semaphore(max_waiting)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = stopping
        # Sends on the wire from this process, by send id: done when marked.
        self._wire: dict[str, asyncio.Future[None]] = {}
        # Jobs taken in this generation or before belong to revoked partitions.
        self._revoked_through = -1

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
        metrics.SENDER_IN_FLIGHT.labels(self.provider).inc(len(deliveries))
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
            metrics.SENDER_IN_FLIGHT.labels(self.provider).dec(len(deliveries))
            self._slots.release()

    async def _send(self, deliveries: list[Delivery]) -> None:
        pending: list[Awaitable[object]] = []
        settled: list[Delivery] = []
        by_app: dict[str, list[Delivery]] = {}
        for delivery in await self._unless_ended(deliveries, pending, settled):
            by_app.setdefault(delivery.job.app_id, []).append(delivery)
        for app_id, jobs in by_app.items():
            for start in range(0, len(jobs), CALL_SIZE):
                group = jobs[start : start + CALL_SIZE]
                await self._call_and_settle(app_id, group, pending, settled)
        await asyncio.gather(*pending)
        for delivery in settled:
            await delivery.ack()

    async def _call_and_settle(
        self,
        app_id: str,
        group: list[Delivery],
        pending: list[Awaitable[object]],
        settled: list[Delivery],
    ) -> None:
        """One provider call; its sends noted before it and marked as soon as it returns.

        A job whose send this process has on the wire already waits for that send to end
        first: a fan-out done again (its resolver died) puts each job on its topic twice,
        and the copy may come while the first is being sent.
        """
        group, copies = _split_copies(group)
        ids = [_send_id(d.job) for d in group if _is_send(d.job)]
        while on_the_wire := [self._wire[i] for i in ids if i in self._wire]:
            await asyncio.wait(on_the_wire)
        if group[0].generation <= self._revoked_through:
            return
        # Claimed with no await since the check: no other batch of this process sends them.
        sending = {i: asyncio.get_running_loop().create_future() for i in ids}
        self._wire.update(sending)
        try:
            noted = await self._mark_on_the_wire(group)
            # Noted before: sent by another attempt, which may have ended since the batch
            # began (its outcome is then kept), or died with it on the wire (repeated).
            unsent = await self._unless_ended(
                [d for d, again in zip(group, noted, strict=True) if again], pending, settled
            )
            repeated = {id(d) for d in unsent}
            group = [
                d for d, again in zip(group, noted, strict=True) if not again or id(d) in repeated
            ]
            results = await self._call(app_id, [d.job for d in group])
            outcomes = [
                self._outcome(d, r, id(d) in repeated) for d, r in zip(group, results, strict=True)
            ]
            # After the provider call an outage must not make the batch start over.
            await until_done(lambda: self._mark_answered(outcomes), "mark", self._stopping)
        finally:
            for send_id, ended in sending.items():
                ended.set_result(None)
                del self._wire[send_id]
        for delivery, result, outcome in zip(group, results, outcomes, strict=True):
            if await self._settle(delivery, result, outcome, pending):
                settled.append(delivery)
        if copies:
            await self._call_and_settle(app_id, copies, pending, settled)

    async def _unless_ended(
        self,
        deliveries: list[Delivery],
        pending: list[Awaitable[object]],
        settled: list[Delivery],
    ) -> list[Delivery]:
        """The deliveries whose send has not ended; the others are settled with the kept
        outcome, published again (feedback may not have it yet; it counts it once)."""
        ended = await self._ended_before(deliveries)
        unsent = []
        for delivery in deliveries:
            earlier = ended.get(_send_id(delivery.job)) if _is_send(delivery.job) else None
            if earlier is None:
                unsent.append(delivery)
                continue
            key = device_key(delivery.job.app_id, delivery.job.token_hash)
            pending.append(await self._publish(topics.FEEDBACK, key, earlier))
            settled.append(delivery)
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
        metrics.PROVIDER_LATENCY.labels(self.provider).observe(time.perf_counter() - started)
        return results

    async def _ended_before(self, deliveries: list[Delivery]) -> dict[str, DeliveryOutcome]:
        """The outcomes of the jobs whose send already ended (a redelivered job): the device
        got that notification, or was found invalid, and must not get it twice."""
        ids = [_send_id(d.job) for d in deliveries if _is_send(d.job)]
        if not ids:
            return {}
        found: dict[str, DeliveryOutcome] = {}
        async for mark in self._db.sends.find({"_id": {"$in": ids}}):
            outcome = decode(topics.FEEDBACK, mark["outcome"].encode())
            assert isinstance(outcome, DeliveryOutcome)
            found[mark["_id"]] = outcome
        return found

    async def _mark_on_the_wire(self, group: list[Delivery]) -> list[bool]:
        """Note the sends about to be made (one bulk write); per job, whether an earlier
        sender had it on the wire and died before its answer. (A note left by this batch's
        own attempt cut short by an outage counts too: it may not be a second send, but a
        duplicate is never left uncounted.)"""
        sends = [{"_id": _send_id(d.job)} for d in group if _is_send(d.job)]
        fresh = iter(await insert_new(self._db.sending, sends))
        return [_is_send(d.job) and not next(fresh) for d in group]

    async def _mark_answered(self, outcomes: list[DeliveryOutcome]) -> None:
        """Keep the outcomes of the sends that reached their device or found it gone, as
        published (one bulk write); forget the others, which may be made again."""
        sends = [o for o in outcomes if o.kind == "send" and o.notification_id is not None]
        marks = [
            {"_id": _send_id(o), "outcome": encode(o).decode()}
            for o in sends
            if o.outcome in _ENDED
        ]
        await insert_new(self._db.sends, marks)
        unended = [_send_id(o) for o in sends if o.outcome not in _ENDED]
        if unended:
            await self._db.sending.delete_many({"_id": {"$in": unended}})

    def _outcome(self, delivery: Delivery, result: Result, repeated: bool) -> DeliveryOutcome:
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
            repeated=repeated,
            accepted_at=job.accepted_at,
        )

    async def _settle(
        self,
        delivery: Delivery,
        result: Result,
        outcome: DeliveryOutcome,
        pending: list[Awaitable[object]],
    ) -> bool:
        """Publish the outcome; False when the job will be retried instead."""
        job = delivery.job
        metrics.SENDS.labels(self.provider, result.outcome).inc()
        delivery.history.append(_describe(result))
        if result.error_class is ErrorClass.AUTH_CONFIG:
            metrics.PROVIDER_AUTH_FAILURES.labels(self.provider).inc()
        key = device_key(job.app_id, job.token_hash)
        pending.append(await self._publish(topics.FEEDBACK, key, outcome))
        if outcome.outcome != "retry":
            metrics.END_TO_END.labels(self.provider).observe(
                (outcome.answered_at - job.accepted_at).total_seconds()
            )
        if outcome.outcome == "retry":
            # Bounded: when too many jobs wait for a retry, this batch waits too.
            await self._waiting.acquire()
            metrics.SENDER_IN_FLIGHT.labels(self.provider).inc()
            self._spawn(self._retry_later(delivery, result.retry_after))
            return False
        if outcome.outcome == "failed" and result.error_class in (
            ErrorClass.RETRYABLE,
            ErrorClass.QUOTA,
            ErrorClass.AUTH_CONFIG,
        ):
            # Worth another try once the cause is fixed: `pushline dlq replay`.
            pending.append(await self._letter(delivery, result))
        return True

    async def _retry_later(self, delivery: Delivery, retry_after: float | None) -> None:
        # Retries take no concurrency slot: a slot may be held by a batch that waits for
        # room among the retries.
        try:
            await asyncio.sleep(self.policy.delay(delivery.job.attempt, retry_after))
            retried = Delivery(
                delivery.key,
                delivery.job.model_copy(update={"attempt": delivery.job.attempt + 1}),
                delivery.ack,
                delivery.generation,
                delivery.history,
            )
            await until_done(lambda: self._send([retried]), "send", self._stopping)
        except Exception:
            log.exception("a retry failed unexpectedly")
        finally:
            metrics.SENDER_IN_FLIGHT.labels(self.provider).dec()
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
        metrics.DEAD_LETTERS.labels(self.topic.name).inc()
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
        metrics.DEAD_LETTERS.labels(self.topic.name).inc()
        await (await self._publish(topics.DLQ, key or b"", letter))


def _split_copies(group: list[Delivery]) -> tuple[list[Delivery], list[Delivery]]:
    """The group without its second jobs of one send, and those second jobs."""
    firsts: dict[str, Delivery] = {}
    copies: list[Delivery] = []
    for delivery in group:
        if not _is_send(delivery.job):
            firsts[str(id(delivery))] = delivery
        elif (send_id := _send_id(delivery.job)) in firsts:
            copies.append(delivery)
        else:
            firsts[send_id] = delivery
    return list(firsts.values()), copies


def _is_send(job: PushJob) -> bool:
    return job.kind == "send" and job.notification_id is not None


def _send_id(sent: PushJob | DeliveryOutcome) -> str:
    """A send's id: its notification and device."""
    return f"{sent.notification_id}:{sent.token_hash}"


def _describe(result: Result) -> str:
    """One history line: the provider's code, its HTTP status and message."""
    code = result.reason or result.outcome
    status = f" ({result.status})" if result.status else ""
    detail = f": {result.detail}" if result.detail else ""
    return f"{code}{status}{detail}"[:300]
