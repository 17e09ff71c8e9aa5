"""Delivery of job batches: provider calls, the retry policy, outcomes, dead letters.

A job's Kafka offset is acknowledged only once its final word (its outcome, or its dead
letter) is on Kafka, so a killed worker loses nothing: unacknowledged jobs come back to the
next owner of their partition. Retries wait in this process, not in the partition: later
jobs keep flowing while a throttled one sleeps, and Faust commits an offset only when every
job before it is acknowledged.
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
from services.core.providers.base import Provider, Result
from services.core.providers.classify import ErrorClass, ProviderName
from services.core.store.client import Document
from services.core.topics import Topic, device_key

log = logging.getLogger(__name__)


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

    async def dispatch(self, messages: Sequence[tuple[bytes | None, bytes, Ack]]) -> None:
        """Start delivering a batch; returns once a concurrency slot has taken it.

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
            deliveries.append(Delivery(key, job, ack))
        if not deliveries:
            return
        await self._slots.acquire()
        metrics.SENDER_IN_FLIGHT.labels(self.provider).inc(len(deliveries))
        self._spawn(self._deliver(deliveries))

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
            await self._send(deliveries)
        except Exception:
            # Unacknowledged, the jobs come back after a restart; say why loudly.
            log.exception("a batch of jobs failed unexpectedly", extra={"jobs": len(deliveries)})
        finally:
            metrics.SENDER_IN_FLIGHT.labels(self.provider).dec(len(deliveries))
            self._slots.release()

    async def _send(self, deliveries: list[Delivery]) -> None:
        fresh = await self._not_yet_ended(deliveries)
        by_app: dict[str, list[Delivery]] = {}
        for delivery in fresh:
            by_app.setdefault(delivery.job.app_id, []).append(delivery)
        pending: list[Awaitable[object]] = []
        kept = {id(d) for d in fresh}
        settled: list[Delivery] = [d for d in deliveries if id(d) not in kept]
        for app_id, group in by_app.items():
            results = await self._call(app_id, [d.job for d in group])
            for delivery, result in zip(group, results, strict=True):
                if await self._settle(delivery, result, pending):
                    settled.append(delivery)
        await asyncio.gather(*pending)
        for delivery in settled:
            await delivery.ack()

    async def _call(self, app_id: str, jobs: list[PushJob]) -> list[Result]:
        try:
            provider = await self._providers.get(app_id, self.provider)
        except ProviderRejectedError as exc:
            return [Result.from_error(exc)] * len(jobs)
        started = time.perf_counter()
        results = await provider.send(jobs)
        metrics.PROVIDER_LATENCY.labels(self.provider).observe(time.perf_counter() - started)
        return results

    async def _not_yet_ended(self, deliveries: list[Delivery]) -> list[Delivery]:
        """Drop jobs whose send already ended (a redelivered or replayed job): the device
        got that notification, or was found invalid, and must not get it twice."""
        ids = {
            f"{d.job.notification_id}:{d.job.token_hash}": d
            for d in deliveries
            if d.job.kind == "send" and d.job.notification_id is not None
        }
        if not ids:
            return deliveries
        ended = {doc["_id"] async for doc in self._db.deliveries.find({"_id": {"$in": list(ids)}})}
        return [d for d in deliveries if not (d.job.kind == "send" and _send_id(d.job) in ended)]

    async def _settle(
        self, delivery: Delivery, result: Result, pending: list[Awaitable[object]]
    ) -> bool:
        """Publish what the result means; False when the job will be retried instead."""
        job = delivery.job
        metrics.SENDS.labels(self.provider, result.outcome).inc()
        delivery.history.append(_describe(result))
        if result.error_class is ErrorClass.AUTH_CONFIG:
            metrics.PROVIDER_AUTH_FAILURES.labels(self.provider).inc()
        retry = result.outcome == "retry" and job.attempt + 1 < self.policy.attempts
        outcome = DeliveryOutcome(
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
            accepted_at=job.accepted_at,
        )
        key = device_key(job.app_id, job.token_hash)
        pending.append(await self._publish(topics.FEEDBACK, key, outcome))
        if outcome.outcome != "retry":
            metrics.END_TO_END.labels(self.provider).observe(
                (outcome.answered_at - job.accepted_at).total_seconds()
            )
        if retry:
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
                delivery.history,
            )
            await self._send([retried])
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


def _send_id(job: PushJob) -> str:
    return f"{job.notification_id}:{job.token_hash}"


def _describe(result: Result) -> str:
    """One history line: the provider's code, its HTTP status and message."""
    code = result.reason or result.outcome
    status = f" ({result.status})" if result.status else ""
    detail = f": {result.detail}" if result.detail else ""
    return f"{code}{status}{detail}"[:300]
