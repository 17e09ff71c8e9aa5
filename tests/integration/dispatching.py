"""The sender's dispatcher run in the test process against the real store, its provider
given by the test, what it publishes and acknowledges recorded instead of sent to Kafka."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence

import pydantic
from aiokafka.errors import KafkaTimeoutError
from pymongo.asynchronous.database import AsyncDatabase

from services.core.errors import ProviderAuthError
from services.core.events import DeadLetter, DeliveryOutcome, DeliveryOutcomes, PushJob
from services.core.fields import ProviderName
from services.core.kafka import encode
from services.core.providers.base import Provider, Result
from services.core.store.client import Document
from services.core.topics import Topic
from services.sender.delivery import RetryPolicy
from services.sender.dispatch import Dispatcher
from services.sender.governor import Governor


class Providers:
    """Every app's provider is `provider`; None stands for credentials that do not work.
    Their quotas are the real governor's, on the test's store."""

    def __init__(self, provider: Provider | None, name: ProviderName, governor: Governor) -> None:
        self.provider = provider
        self.name = name
        self.governor = governor

    async def get(self, app_id: str, provider: str) -> Provider:
        if self.provider is None:
            raise ProviderAuthError("no credentials", provider=self.name, reason="NoCredentials")
        return self.provider

    async def admit(
        self, provider: Provider, jobs: Sequence[PushJob], given_up: Callable[[], bool]
    ) -> bool:
        return await self.governor.admit(provider, jobs, given_up)

    async def answered(
        self, provider: Provider, jobs: Sequence[PushJob], results: Sequence[Result]
    ) -> None:
        await self.governor.answered(provider, jobs, results)


class Harness:
    """A dispatcher for `name`'s job topic: three attempts, retried without waiting."""

    def __init__(
        self,
        db: AsyncDatabase[Document],
        provider: Provider | None,
        name: ProviderName = "fcm",
        quotas: Mapping[str, float] | None = None,
    ) -> None:
        self.published: list[tuple[str, pydantic.BaseModel]] = []
        self.keys: list[bytes] = []
        self.acked: list[str] = []
        # Cleared, what is published is not on Kafka until it is set again.
        self.kafka = asyncio.Event()
        self.kafka.set()
        # Topics whose next publish meets a broker outage.
        self.failing: set[str] = set()
        self.dispatcher = Dispatcher(
            name,
            Providers(provider, name, Governor(db, quotas or {})),
            self.publish,
            db,
            policy=RetryPolicy(attempts=3, base=0.0),
        )

    async def publish(
        self, topic: Topic, key: bytes, message: pydantic.BaseModel
    ) -> Awaitable[object]:
        if topic.name in self.failing:
            self.failing.discard(topic.name)
            raise KafkaTimeoutError
        self.published.append((topic.name, message))
        self.keys.append(key)

        async def delivered() -> None:
            await self.kafka.wait()

        # A future, as the producer returns: what is published may never be awaited.
        return asyncio.ensure_future(delivered())

    async def run(self, *jobs: PushJob) -> None:
        await self.start(*jobs)
        await self.dispatcher.drain()

    async def start(self, *jobs: PushJob, generation: int = 0) -> None:
        """Hand the jobs over as one batch, without waiting for their end."""

        def acker(token: str) -> object:
            async def ack() -> None:
                self.acked.append(token)

            return ack

        await self.dispatcher.dispatch(
            [(b"key", encode(job), acker(job.token)) for job in jobs],  # type: ignore[misc]
            generation,
        )

    def outcomes(self) -> list[DeliveryOutcome]:
        """Every outcome published, those of batches unpacked, in order."""
        found: list[DeliveryOutcome] = []
        for _, message in self.published:
            if isinstance(message, DeliveryOutcomes):
                found.extend(message.outcomes)
            elif isinstance(message, DeliveryOutcome):
                found.append(message)
        return found

    def batches(self) -> list[DeliveryOutcomes]:
        return [m for t, m in self.published if isinstance(m, DeliveryOutcomes)]

    def letters(self) -> list[DeadLetter]:
        return [m for t, m in self.published if isinstance(m, DeadLetter)]
