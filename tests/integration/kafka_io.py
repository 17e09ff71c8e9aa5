"""Produce to and read from the test's namespaced topics, and wait for conditions."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer
from pydantic import BaseModel

from services.core import kafka
from services.core.settings import Settings
from services.core.topics import Topic

T = TypeVar("T")


async def publish(settings: Settings, topic: Topic, key: bytes, *messages: BaseModel) -> None:
    """Put messages on the test's `topic` and wait until Kafka has them."""
    await publish_raw(settings, topic, key, *(kafka.encode(m) for m in messages))


async def publish_raw(settings: Settings, topic: Topic, key: bytes, *values: bytes) -> None:
    """Put raw values on the test's `topic` (for malformed input)."""
    producer = kafka.producer(settings, client_id="test")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(settings.scoped(topic.name), value, key=key)
    finally:
        await producer.stop()


async def read(
    settings: Settings, topic: Topic, predicate: Callable[[object], bool], within: float = 30.0
) -> object:
    """The first message on the test's `topic` (from the start) that `predicate` accepts."""
    (found,) = await read_many(settings, [topic], predicate, 1, within)
    return found


async def read_many(
    settings: Settings,
    sources: list[Topic],
    predicate: Callable[[object], bool],
    count: int,
    within: float = 60.0,
) -> list[object]:
    """The first `count` messages on the test's `sources` (from the start) that
    `predicate` accepts; fails if fewer arrive within `within` seconds."""
    by_name = {settings.scoped(topic.name): topic for topic in sources}
    consumer = AIOKafkaConsumer(
        *by_name,
        bootstrap_servers=settings.kafka_servers,
        group_id=f"test-reader-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: list[object] = []
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for partition, records in batches.items():
                for record in records:
                    message = kafka.decode(by_name[partition.topic], record.value)
                    if predicate(message):
                        found.append(message)
                        if len(found) == count:
                            return found
        raise AssertionError(f"{len(found)} of {count} messages within {within} s")
    finally:
        await consumer.stop()


async def eventually(check: Callable[[], Awaitable[T | None]], within: float = 30.0) -> T:
    """Poll `check` until it returns something other than None or False."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.2)
