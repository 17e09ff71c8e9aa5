"""What the sender publishes of its jobs: their outcomes on `push.feedback`, the dead letters
of those that failed for good or could not be read, and their acknowledgements.

A job's Kafka offset is acknowledged only once its final word (its outcome, or its dead
letter) is on Kafka, so a killed worker loses nothing: unacknowledged jobs come back to the
next owner of their partition. The outcomes of the sends of one provider call go to
`push.feedback` as one message (`DeliveryOutcomes`), and the call's jobs are acknowledged
once it is there. It is keyed by its first outcome's device, so calls spread over the
partitions as their jobs did; the other devices' events may travel on other partitions,
which feedback does not mind (a device is made invalid only if it was not registered again
after the provider's answer, whichever arrives first). A verification's outcome and an
invalid token's go alone, keyed by the device, in order with the device's registration
events.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import NamedTuple, get_args

import pydantic

from services.core import deadletters, metrics, topics
from services.core.events import DeliveryOutcome, DeliveryOutcomes, utc_now
from services.core.kafka import encode
from services.core.providers.base import Result, SendOutcome
from services.core.providers.classify import ErrorClass
from services.core.topics import Topic, device_key
from services.sender.jobs import Delivery

Publish = Callable[[Topic, bytes, "pydantic.BaseModel"], Awaitable[Awaitable[object]]]

# Failures worth another try once their cause is fixed: their jobs are replayable letters.
REPLAYABLE = frozenset({ErrorClass.RETRYABLE, ErrorClass.QUOTA, ErrorClass.AUTH_CONFIG})


class Call(NamedTuple):
    """A provider call's jobs and what came of them."""

    # The jobs whose send had ended before, with the outcome kept then: not called again.
    kept: list[tuple[Delivery, DeliveryOutcome]]
    called: list[Delivery]
    results: list[Result]
    outcomes: list[DeliveryOutcome]


class Settled(NamedTuple):
    """What is left to do once a call's outcomes are published."""

    # Ends once the jobs that got their final word are acknowledged.
    acknowledged: asyncio.Task[None]
    # The jobs to try again, with the result that said so.
    retries: list[tuple[Delivery, Result]]


class Outcomes:
    """The outcomes and dead letters of one provider topic's jobs."""

    def __init__(self, provider: str, topic: Topic, publish: Publish, attempts: int) -> None:
        """`attempts`: how many provider calls a job gets; a retry after the last fails."""
        self._topic = topic
        self._publish = publish
        self._attempts = attempts
        # Metrics bound to this provider once: a `labels()` lookup per job showed in profiles.
        self._sends = {o: metrics.SENDS.labels(provider, o) for o in get_args(SendOutcome)}
        self._end_to_end = metrics.END_TO_END.labels(provider)
        self._auth_failures = metrics.PROVIDER_AUTH_FAILURES.labels(provider)
        self._dead_letters = metrics.DEAD_LETTERS.labels(topic.name)
        self._cancelled = metrics.SENDS.labels(provider, "cancelled")

    def of(self, called: list[Delivery], results: list[Result]) -> list[DeliveryOutcome]:
        """What the results of one call mean for its jobs: one answer time for them all."""
        answered_at = utc_now()
        return [self._outcome(d, r, answered_at) for d, r in zip(called, results, strict=True)]

    def cancelled(self, dropped: list[Delivery]) -> Call:
        """A call that is never made: the jobs of cancelled notifications, each ended
        `cancelled`, published and acknowledged as kept outcomes are."""
        self._cancelled.inc(len(dropped))
        now = utc_now()
        ended = [
            (
                d,
                DeliveryOutcome(
                    notification_id=d.job.notification_id,
                    app_id=d.job.app_id,
                    provider=d.job.provider,
                    platform=d.job.platform,
                    token_hash=d.job.token_hash,
                    outcome="cancelled",
                    accepted_at=d.job.accepted_at,
                    answered_at=now,
                ),
            )
            for d in dropped
        ]
        return Call(ended, [], [], [])

    async def settle(self, call: Call) -> Settled:
        """Publish the outcomes of one call, and the kept ones of its jobs that ended
        before, as one message (verifications' and invalid tokens' alone); dead-letter what
        failed for good, and acknowledge (once on Kafka) all but the jobs to try again."""
        on_kafka: list[Awaitable[object]] = []
        published = [outcome for _, outcome in call.kept] + call.outcomes
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
        for name, count in Counter(result.outcome for result in call.results).items():
            self._sends[name].inc(count)
        settled = [delivery for delivery, _ in call.kept]
        retries: list[tuple[Delivery, Result]] = []
        for delivery, result, outcome in zip(call.called, call.results, call.outcomes, strict=True):
            delivery.history.append(result.describe())
            if result.error_class is ErrorClass.AUTH_CONFIG:
                self._auth_failures.inc()
            if outcome.outcome == "retry":
                retries.append((delivery, result))
                continue
            self._end_to_end.observe(
                (outcome.answered_at - delivery.job.accepted_at).total_seconds()
            )
            if outcome.outcome == "failed" and result.error_class in REPLAYABLE:
                # Worth another try once the cause is fixed: `pushline dlq replay`.
                on_kafka.append(await self._letter(delivery, result))
            settled.append(delivery)
        return Settled(asyncio.ensure_future(_acknowledge(on_kafka, settled)), retries)

    async def unreadable(self, key: bytes | None, value: bytes, error: str) -> None:
        """Park a job that could not be read, and wait until Kafka has it."""
        self._dead_letters.inc()
        letter = deadletters.letter(self._topic, key, value, error)
        await (await self._publish(topics.DLQ, key or b"", letter))

    def _outcome(
        self, delivery: Delivery, result: Result, answered_at: datetime
    ) -> DeliveryOutcome:
        job = delivery.job
        retry = result.outcome == "retry" and job.attempt + 1 < self._attempts
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

    async def _letter(self, delivery: Delivery, result: Result) -> Awaitable[object]:
        letter = deadletters.letter(
            self._topic,
            delivery.key,
            # Replayed, the job starts its attempts over.
            encode(delivery.job.model_copy(update={"attempt": 0})),
            "; ".join(delivery.history),
            attempts=delivery.job.attempt + 1,
            app_id=delivery.job.app_id,
            reason=result.reason,
            replayable=True,
        )
        self._dead_letters.inc()
        return await self._publish(topics.DLQ, delivery.key or b"", letter)


async def _acknowledge(on_kafka: list[Awaitable[object]], settled: list[Delivery]) -> None:
    """Acknowledge the settled jobs once what was published for them is on Kafka."""
    await asyncio.gather(*on_kafka)
    for delivery in settled:
        await delivery.ack()
