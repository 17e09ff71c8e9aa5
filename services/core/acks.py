"""Acknowledging a stream's events in offset order, for agents that finish them out of order.

faust-streaming commits the first run of consecutive acknowledged offsets of a partition.
It refuses to when the run starts well past the committed offset, but lets a gap of one
through (`Consumer._new_offset` compares with `> 1`) and checks nothing before a first
commit: an event acknowledged before the one in front of it could have that one committed
over while it is still being worked on, and lost if the worker then dies or gives it up in
a rebalance. So events are acknowledged to Faust only once every earlier event of their
partition is done.

After a rebalance the partition is read again from its committed offset (by this worker or
another), so what is left of the old generation is dropped: its events are not
acknowledged, and the re-read ones are.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TP


@dataclass
class _Entry:
    event: faust.EventT[Any]
    done: bool = False


class OrderedAcks:
    """Hands out, per event taken from `stream`, the function that acknowledges it."""

    def __init__(self, app: faust.App, stream: faust.StreamT[Any]) -> None:
        self._app = app
        self._stream = stream
        self._generation = app.consumer_generation_id
        self._queues: dict[TP, deque[_Entry]] = {}

    def acker(self, event: faust.EventT[Any]) -> Callable[[], Awaitable[None]]:
        """Call for each event in the order they were taken; the returned function marks
        the event done, in any order."""
        generation = self._app.consumer_generation_id
        if generation != self._generation:
            self._generation = generation
            self._queues = {}
        queue = self._queues.setdefault(event.message.tp, deque())
        entry = _Entry(event)
        queue.append(entry)

        async def ack() -> None:
            entry.done = True
            if generation != self._generation:
                return
            while queue and queue[0].done:
                await self._stream.ack(queue.popleft().event)

        return ack
