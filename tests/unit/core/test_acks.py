"""Events are acknowledged to Faust in offset order per partition, within their generation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import faust
from faust.types import TP

from services.core.acks import OrderedAcks

P0 = TP("push.jobs.apns", 0)
P1 = TP("push.jobs.apns", 1)


@dataclass
class Message:
    tp: TP
    offset: int


@dataclass
class Event:
    message: Message


@dataclass
class Stream:
    acked: list[tuple[int, int]] = field(default_factory=list)

    async def ack(self, event: Event) -> bool:
        self.acked.append((event.message.tp.partition, event.message.offset))
        return True


@dataclass
class App:
    consumer_generation_id: int = 1


def setup() -> tuple[App, Stream, OrderedAcks]:
    app, stream = App(), Stream()
    return app, stream, OrderedAcks(cast(faust.App, app), cast(Any, stream))


def event(tp: TP, offset: int) -> Any:
    return Event(Message(tp, offset))


async def test_an_event_is_acknowledged_once_every_earlier_one_of_its_partition_is() -> None:
    _, stream, acks = setup()
    first, second, third = (acks.acker(event(P0, n)) for n in (10, 11, 12))
    other = acks.acker(event(P1, 5))
    await third()
    await second()
    await other()
    # Faust would commit 13 over the unfinished 10 if it saw 11 and 12 now.
    assert stream.acked == [(1, 5)]
    await first()
    assert stream.acked == [(1, 5), (0, 10), (0, 11), (0, 12)]


async def test_what_is_left_of_an_old_generation_is_never_acknowledged() -> None:
    app, stream, acks = setup()
    old_first, old_second = acks.acker(event(P0, 10)), acks.acker(event(P0, 11))
    await old_second()
    app.consumer_generation_id = 2
    # Read again from the committed offset after the rebalance.
    again = [acks.acker(event(P0, n)) for n in (10, 11)]
    await old_first()
    assert stream.acked == []
    for ack in again:
        await ack()
    assert stream.acked == [(0, 10), (0, 11)]
