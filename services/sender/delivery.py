"""A provider call with its marks, and the retry policy.

Before each provider call its sends are noted (they are on the wire); after it, the
outcome of each send that reached its device or found it gone is kept, and the others are
forgotten, which may be made again (`marks`: one store write before the call, one after);
but a send whose request went unanswered stays noted, as on the wire, until its retry ends.
A job that comes back with a kept outcome is not sent again, its outcome is published
again instead (feedback counts it once). A job that comes back noted without a kept
outcome was on the wire when its sender died: it is sent again and its outcome says
`repeated`, the device may have it twice; so is the retry of a send whose request went
unanswered after it may have arrived (a timeout, a reset), and the retry of a repeated
send. Feedback's own records of ended sends lag behind by however far feedback is behind:
checking those alone sent thousands of jobs twice after a sender was killed during a large
send.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from pymongo.asynchronous.database import AsyncDatabase

from services.core import metrics
from services.core.errors import ProviderRejectedError
from services.core.events import DeliveryOutcome, PushJob
from services.core.outages import until_done
from services.core.providers.base import Provider, Result
from services.core.store.client import Document
from services.core.store.marks import Marks
from services.sender.jobs import Delivery, is_send
from services.sender.outcomes import Call, Outcomes


class Providers(Protocol):
    """Where a call gets its app's provider, and its quota (`AppProviders` in production)."""

    async def get(self, app_id: str, provider: str) -> Provider: ...

    async def admit(
        self, provider: Provider, jobs: Sequence[PushJob], given_up: Callable[[], bool]
    ) -> bool: ...

    async def answered(
        self, provider: Provider, jobs: Sequence[PushJob], results: Sequence[Result]
    ) -> None: ...


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


def next_attempt(delivery: Delivery, result: Result) -> Delivery:
    """The job's next attempt, after `result` asked for one."""
    return Delivery(
        delivery.key,
        delivery.job.model_copy(update={"attempt": delivery.job.attempt + 1}),
        delivery.ack,
        delivery.generation,
        delivery.history,
        # The device may have it already: from the send before this one, whose request
        # may have arrived without an answer, or from an earlier sender.
        repeated=delivery.repeated or result.maybe_delivered,
    )


class Calls:
    """One provider's calls, each one's sends noted before it and marked after it."""

    def __init__(
        self,
        provider: str,
        providers: Providers,
        db: AsyncDatabase[Document],
        outcomes: Outcomes,
        stopping: Callable[[], bool],
    ) -> None:
        self._provider = provider
        self._providers = providers
        self._marks = Marks(db)
        self._outcomes = outcomes
        self._stopping = stopping
        # Bound to this provider once: a `labels()` lookup per call showed in profiles.
        self._latency = metrics.PROVIDER_LATENCY.labels(provider)

    async def ended_earlier(
        self, deliveries: list[Delivery]
    ) -> tuple[list[tuple[Delivery, DeliveryOutcome]], list[Delivery]]:
        """The deliveries whose send an earlier version's sender ended, with the outcome
        it kept (`Marks.earlier_versions`), and the others, to be sent."""
        kept, on_the_wire = await self._marks.earlier_versions(
            [d.send for d in deliveries if d.send is not None]
        )
        if not kept and not on_the_wire:
            return [], deliveries
        ended: list[tuple[Delivery, DeliveryOutcome]] = []
        unsent: list[Delivery] = []
        for delivery in deliveries:
            if delivery.send is None:
                unsent.append(delivery)
            elif (earlier := kept.get(delivery.send)) is not None:
                ended.append((delivery, earlier))
            else:
                delivery.repeated = delivery.send in on_the_wire
                unsent.append(delivery)
        return ended, unsent

    async def admit(self, app_id: str, group: list[Delivery], given_up: Callable[[], bool]) -> bool:
        """Wait until the provider's quota lets `group` be sent (services.sender.governor);
        False when `given_up()` says so meanwhile. Raises what the store raises."""
        if not group:
            return True
        try:
            provider = await self._providers.get(app_id, self._provider)
        except ProviderRejectedError:
            # The call fails without reaching the provider.
            return True
        return await self._providers.admit(provider, [d.job for d in group], given_up)

    async def make(self, app_id: str, group: list[Delivery], ids: list[str]) -> Call:
        """One provider call for `group` (no two jobs of one send; `ids` are its sends),
        noted before and marked as soon as it returns. A job whose send ended before is
        not called: its kept outcome stands.

        Raises what the store or the provider raised before the call's results were in;
        after that an outage is waited out: it must not make the batch start over.
        """
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
        outcomes = self._outcomes.of(calling, results)
        sends = [o for o in outcomes if is_send(o)]
        unanswered = {
            d.send
            for d, result in zip(calling, results, strict=True)
            if d.send is not None and result.maybe_delivered
        }
        await until_done(lambda: self._marks.settle(sends, unanswered), "mark", self._stopping)
        return Call(kept, calling, results, outcomes)

    async def _call(self, app_id: str, jobs: list[PushJob]) -> list[Result]:
        if not jobs:
            return []
        try:
            provider = await self._providers.get(app_id, self._provider)
        except ProviderRejectedError as exc:
            return [Result.from_error(exc)] * len(jobs)
        started = time.perf_counter()
        results = await provider.send(jobs)
        self._latency.observe(time.perf_counter() - started)
        await self._providers.answered(provider, jobs, results)
        return results
