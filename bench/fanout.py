"""The `fanout` scenario: the resolver alone expands one send request over N devices
into per-token jobs, reached through contact ids, cellphones and emails (`contacts`), as
every device of the app (`all`, `to.all`), or as a segment of the app every device is in
(`segment`, `to.filters`: what testing each device costs over `to.all`'s read).

Counts what the resolver published: the end offsets of the job topics (both lanes:
`to.all` and segments go on the bulk ones). Nothing consumes them here; the baseline
scenario reads the same jobs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.harness import Sampler, Stage, audience, costs, selectors, send
from services.core import topics
from services.core.settings import Settings

PROVIDERS = ("fcm", "apns")
AUDIENCES = ("contacts", "all", "segment")
# Run unless asked otherwise.
DEFAULT_AUDIENCES = ("contacts", "all")
# Every device of the audience is in it, so it produces as many jobs as `all`.
SEGMENT = {
    "and": [
        {"registered": {"after": "2000-01-01T00:00:00Z"}},
        {"or": [{"platform": platform} for platform in ("android", "ios", "web")]},
    ]
}


@asynccontextmanager
async def job_counter(settings: Settings) -> AsyncIterator[Callable[[], Awaitable[int]]]:
    """A function returning how many jobs the namespace's job topics hold."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_servers)
    await consumer.start()
    try:
        # The services created the topics at start-up, with this many partitions.
        partitions = [
            TopicPartition(settings.scoped(t.name), p)
            for lane in topics.LANE_TOPICS.values()
            for t in lane.values()
            for p in range(settings.topic_partitions)
        ]

        async def count() -> int:
            offsets = await consumer.end_offsets(partitions)
            return int(sum(offsets.values()))

        yield count
    finally:
        await consumer.stop()


async def resolve(
    stage: Stage, providers: Sequence[str], count: int, to: str = "contacts"
) -> tuple[float, Sampler, float]:
    """Load the audience, run the resolver over it, reached as `to` (one of AUDIENCES);
    (seconds, sampler, load rate)."""
    load_rate = await stage.load(audience(count, providers, stage.webpush))
    (resolver,) = await stage.start("resolver")
    await stage.warm_up(done=False)
    resolver.mark()
    async with job_counter(stage.settings) as jobs:
        await send(stage, _to(to, count))
        sampler = Sampler(jobs, count)
        seconds = await sampler.run(limit=max(120.0, count / 500))
    return seconds, sampler, load_rate


def _to(to: str, count: int) -> dict[str, Any]:
    """The send request's `to` for an audience of AUDIENCES."""
    if to == "contacts":
        return selectors(count)
    return {"all": True} if to == "all" else {"filters": SEGMENT}


async def run(stage: Stage, count: int, to: str = "contacts") -> dict[str, Any]:
    """One measured fan-out of `count` jobs, reached as `to` (one of AUDIENCES)."""
    seconds, sampler, load_rate = await resolve(stage, PROVIDERS, count, to)
    return {
        "case": f"{count:,} devices, {to}",
        "notifications": count,
        "counted": sampler.series[-1][1],
        "seconds": round(seconds, 3),
        "per_second": round(count / seconds, 1),
        "load_per_second": round(load_rate),
        **costs(stage.services, count),
        "series": sampler.series,
    }
