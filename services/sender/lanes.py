"""The concurrency slots of one provider's sender, shared by its two priority lanes.

A transactional batch takes any free slot, before every bulk batch that waits. A bulk
batch takes one only while no transactional batch waits, and leaves `reserve` slots free:
a bulk send holds at most `concurrency - reserve` batches in provider calls, so a
transactional job that comes during it starts at once instead of waiting for a batch of
500 bulk jobs to end (tens of seconds with a slow provider). Slots only order the starts:
a batch that holds one runs to its end, with its marks and acknowledgements as before.
"""

from __future__ import annotations

import asyncio
from collections import deque

from services.core.events import PriorityLane

# The order slots are handed out in.
_FIRST_TO_LAST: tuple[PriorityLane, ...] = ("transactional", "bulk")


class LaneSlots:
    """`concurrency` slots, transactional batches first."""

    def __init__(self, concurrency: int, reserve: int = 0) -> None:
        self._free = concurrency
        # A sender of one slot reserves none: its bulk jobs would never be sent.
        self._reserve = max(0, min(reserve, concurrency - 1))
        self._waiters: dict[PriorityLane, deque[asyncio.Future[None]]] = {
            "transactional": deque(),
            "bulk": deque(),
        }

    async def acquire(self, lane: PriorityLane) -> None:
        """Wait until `lane` may take a slot, and take it."""
        if not self._waiters[lane] and self._may_take(lane):
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[lane].append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # Handed a slot as it was cancelled: the slot goes to the next in line.
                self.release()
            else:
                self._waiters[lane].remove(waiter)
                # A transactional batch that stops waiting may let bulk ones start.
                self._wake()
            raise

    def release(self) -> None:
        """Give a slot back."""
        self._free += 1
        self._wake()

    def _may_take(self, lane: PriorityLane) -> bool:
        if lane == "transactional":
            return self._free > 0
        return not self._waiters["transactional"] and self._free > self._reserve

    def _wake(self) -> None:
        for lane in _FIRST_TO_LAST:
            waiting = self._waiters[lane]
            while waiting and self._may_take(lane):
                self._free -= 1
                waiting.popleft().set_result(None)
