"""A tap on `push.registrations`: what was published since it opened, by app.

The topic is shared with every other test and process, so the tap reads each partition
from its end at opening and hands back only the messages about the app asked for.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.core import topics
from services.core.events import CleanupDevices, RegisterDevice, UpdateDevice
from services.core.kafka import admin_client, decode
from services.core.settings import Settings


class Tap:
    """Reads what was published on push.registrations since it started."""

    def __init__(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
        self._consumer = consumer
        self._partitions = partitions

    async def drain(self, app_id: str) -> list[tuple[bytes, RegisterDevice | CleanupDevices]]:
        """Every message about `app_id` up to the current end of each partition."""
        ends = await self._consumer.end_offsets(self._partitions)
        found: list[tuple[bytes, RegisterDevice | CleanupDevices]] = []
        while True:
            behind = [tp for tp in self._partitions if await self._consumer.position(tp) < ends[tp]]
            if not behind:
                return found
            batches = await self._consumer.getmany(*behind, timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    message = decode(topics.REGISTRATIONS, record.value)
                    # Device updates (tags, language) are read with kafka_io where wanted.
                    if isinstance(message, UpdateDevice):
                        continue
                    assert isinstance(message, RegisterDevice | CleanupDevices)
                    if message.app_id == app_id:
                        found.append((record.key, message))


@asynccontextmanager
async def registrations_tap(settings: Settings) -> AsyncIterator[Tap]:
    """Open a tap at the current end of every partition of push.registrations."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_servers,
        group_id=f"test-registry-{uuid.uuid4().hex}",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        name = settings.scoped(topics.REGISTRATIONS.name)
        numbers = await _partitions(settings, name)
        partitions = [TopicPartition(name, n) for n in sorted(numbers)]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for partition in partitions:
            await consumer.position(partition)
        yield Tap(consumer, partitions)
    finally:
        await consumer.stop()


async def _partitions(settings: Settings, name: str) -> list[int]:
    """The topic's partition ids, once the cluster's metadata lists them (a topic created
    a moment ago may show none yet)."""
    admin = admin_client(settings)
    await admin.start()
    try:
        for _ in range(50):
            [described] = await admin.describe_topics([name])
            numbers = [int(p["partition"]) for p in described["partitions"]]
            if numbers:
                return numbers
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    raise AssertionError(f"topic {name} has no partitions")
