"""Reading and replaying `push.dlq`: what `pushline dlq list|replay` does.

Replaying puts a dead job back on the topic it came from. The sender skips any job whose
send already ended (`deliveries`), so a replay never sends twice to a device that already
got that notification.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.core import kafka, topics
from services.core.events import DeadLetter
from services.core.settings import Settings


@dataclass(frozen=True)
class LetterFilter:
    """Which dead letters to act on; every field that is set must match."""

    app_id: str | None = None
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, letter: DeadLetter) -> bool:
        """Whether `letter` passes every condition that is set."""
        return (
            (self.app_id is None or letter.app_id == self.app_id)
            and (self.reason is None or letter.reason == self.reason)
            and (self.since is None or letter.failed_at >= self.since)
            and (self.until is None or letter.failed_at < self.until)
        )


async def read_letters(settings: Settings, which: LetterFilter) -> AsyncIterator[DeadLetter]:
    """Every dead letter on the topic now that `which` matches, oldest first per partition.

    Reads without a consumer group, from the beginning to the end offsets of when it
    started, so it neither moves anyone's offsets nor waits for new letters.
    """
    name = settings.scoped(topics.DLQ.name)
    # No group, so no committed offsets: every partition starts at its earliest record.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_servers,
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(name, p) for p in await _partitions(settings, name)]
        if not partitions:
            return
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        for tp in list(remaining):
            if await consumer.position(tp) >= ends[tp]:
                remaining.discard(tp)
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, records in batches.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        remaining.discard(tp)
                        break
                    letter = kafka.decode(topics.DLQ, record.value)
                    assert isinstance(letter, DeadLetter)
                    if which.matches(letter):
                        yield letter
                    if record.offset + 1 >= ends[tp]:
                        remaining.discard(tp)
    finally:
        await consumer.stop()


async def _partitions(settings: Settings, name: str) -> list[int]:
    """The partition ids of topic `name`; none when it does not exist."""
    admin = kafka.admin_client(settings)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([name])
    finally:
        await admin.close()
    if described.get("error_code"):
        return []
    return [int(partition["partition"]) for partition in described["partitions"]]


async def replay(settings: Settings, which: LetterFilter) -> int:
    """Put every replayable letter that `which` matches back on its topic; return how many."""
    producer = kafka.producer(settings, client_id="pushline-dlq-replay")
    await producer.start()
    replayed = 0
    try:
        async for letter in read_letters(settings, which):
            if not letter.replayable:
                continue
            key = letter.key.encode() if letter.key is not None else None
            await producer.send_and_wait(
                settings.scoped(letter.topic), letter.value.encode(), key=key
            )
            replayed += 1
    finally:
        await producer.stop()
    return replayed
