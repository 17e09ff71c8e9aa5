"""Dead letters: the one way a worker writes them, and reading and replaying `push.dlq`,
what `pushline dlq list|replay` does.

Replaying puts a dead job back on the topic it came from and records the letter in the
store (`Replays`), so a second replay skips it; the letter stays on `push.dlq`, listed as
replayed. The sender also skips any job whose send already ended (`deliveries`), so even a
letter replayed twice never sends twice to a device that already got that notification.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.core import kafka, topics
from services.core.events import DeadLetter
from services.core.settings import Settings
from services.core.store.replays import Replays
from services.core.topics import Topic

# How many letters `listed` looks up in the store at once.
_PAGE = 500

# The longest error a letter holds (`DeadLetter.error`).
ERROR_LENGTH = 2000


def letter(
    topic: Topic,
    key: bytes | None,
    value: bytes,
    error: str,
    *,
    attempts: int = 0,
    app_id: str | None = None,
    reason: str | None = None,
    replayable: bool = False,
) -> DeadLetter:
    """The dead letter of the message `value`, taken from `topic` under `key`, and why it
    failed (cut to ERROR_LENGTH). Bytes that are not UTF-8 are replaced: the malformed
    message may be the very reason it is parked."""
    return DeadLetter(
        topic=topic.name,
        key=key.decode(errors="replace") if key is not None else None,
        value=value.decode(errors="replace"),
        error=error[:ERROR_LENGTH],
        attempts=attempts,
        app_id=app_id,
        reason=reason,
        replayable=replayable,
    )


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


@dataclass(frozen=True)
class Parked:
    """A dead letter and where it sits on the (namespaced) dead-letter topic."""

    topic: str
    partition: int
    offset: int
    letter: DeadLetter

    @property
    def id(self) -> str:
        """`<topic>/<partition>/<offset>`: names this letter for as long as the topic lives."""
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def failed_at(self) -> str:
        """The letter's time as the replay record keeps it."""
        return self.letter.failed_at.isoformat()


async def read_letters(settings: Settings, which: LetterFilter) -> AsyncIterator[Parked]:
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
                        yield Parked(name, tp.partition, record.offset, letter)
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


async def listed(
    settings: Settings, which: LetterFilter, replays: Replays
) -> AsyncIterator[tuple[Parked, datetime | None]]:
    """Each letter `which` matches with when it was replayed (None if never)."""
    page: list[Parked] = []
    async for parked in read_letters(settings, which):
        page.append(parked)
        if len(page) == _PAGE:
            for entry in await _with_replays(page, replays):
                yield entry
            page = []
    for entry in await _with_replays(page, replays):
        yield entry


async def _with_replays(
    page: list[Parked], replays: Replays
) -> list[tuple[Parked, datetime | None]]:
    if not page:
        return []
    replayed = await replays.replayed({parked.id: parked.failed_at for parked in page})
    return [(parked, replayed.get(parked.id)) for parked in page]


def describe(parked: Parked, replayed: datetime | None) -> dict[str, object]:
    """What `dlq list` shows of a letter: where it sits, what it was for, why it failed.

    Never the message itself, which holds the device token: the token's hash instead. Only
    the error's first line: a validation error goes on to quote the message.
    """
    letter = parked.letter
    message = _fields(letter.value)
    provider = message.get("provider") or next(
        (
            name
            for lane in topics.LANE_TOPICS.values()
            for name, topic in lane.items()
            if topic.name == letter.topic
        ),
        None,
    )
    return {
        "letter": parked.id,
        "failed_at": letter.failed_at.isoformat(),
        "topic": letter.topic,
        "notification_id": message.get("notification_id"),
        "app_id": letter.app_id or message.get("app_id"),
        "provider": provider,
        "token_hash": message.get("token_hash"),
        "reason": letter.reason,
        "attempts": letter.attempts,
        "replayable": letter.replayable,
        "replayed": replayed.isoformat() if replayed else None,
        "error": letter.error.partition("\n")[0],
    }


def _fields(value: str) -> dict[str, str]:
    """The identifying fields of a dead message, as far as it can be read (it may be the
    malformed message that got it dead-lettered)."""
    try:
        decoded: Any = json.loads(value)
    except ValueError:
        return {}
    if not isinstance(decoded, dict):
        return {}
    names = ("notification_id", "app_id", "provider", "token_hash")
    return {name: decoded[name] for name in names if isinstance(decoded.get(name), str)}


async def replay(settings: Settings, which: LetterFilter, replays: Replays) -> int:
    """Put every replayable letter that `which` matches back on its topic, unless it was
    replayed before or another replay is sending it now; return how many this call put back.
    """
    producer = kafka.producer(settings, client_id="pushline-dlq-replay")
    await producer.start()
    replayed = 0
    try:
        async for parked in read_letters(settings, which):
            letter = parked.letter
            if not letter.replayable or not await replays.claim(parked.id, parked.failed_at):
                continue
            key = letter.key.encode() if letter.key is not None else None
            try:
                await producer.send_and_wait(
                    settings.scoped(letter.topic), letter.value.encode(), key=key
                )
            except BaseException:
                await replays.release(parked.id)
                raise
            await replays.done(parked.id)
            replayed += 1
    finally:
        await producer.stop()
    return replayed
