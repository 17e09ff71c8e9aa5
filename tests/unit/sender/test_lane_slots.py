"""The sender's concurrency slots hand transactional batches their slot first."""

from __future__ import annotations

import asyncio

from services.core.events import PriorityLane
from services.sender.lanes import LaneSlots


async def started(slots: LaneSlots, lane: PriorityLane, log: list[str]) -> asyncio.Task[None]:
    async def take() -> None:
        await slots.acquire(lane)
        log.append(lane)

    task = asyncio.ensure_future(take())
    await asyncio.sleep(0)
    return task


async def test_bulk_leaves_the_reserved_slots_to_transactional_batches() -> None:
    slots = LaneSlots(3, reserve=1)
    taken: list[str] = []
    bulk = [await started(slots, "bulk", taken) for _ in range(3)]
    assert taken == ["bulk", "bulk"]
    transactional = await started(slots, "transactional", taken)
    assert taken == ["bulk", "bulk", "transactional"]
    assert transactional.done()
    assert not bulk[2].done()
    slots.release()
    await asyncio.sleep(0)
    # The transactional batch's slot came back: the reserve again, not bulk's.
    assert not bulk[2].done()
    slots.release()
    await bulk[2]


async def test_a_waiting_transactional_batch_goes_before_every_waiting_bulk_one() -> None:
    slots = LaneSlots(2, reserve=1)
    taken: list[str] = []
    await started(slots, "bulk", taken)
    await started(slots, "transactional", taken)
    later_bulk = await started(slots, "bulk", taken)
    later_transactional = await started(slots, "transactional", taken)
    assert taken == ["bulk", "transactional"]
    slots.release()
    await later_transactional
    assert taken[-1] == "transactional"
    slots.release()
    slots.release()
    await later_bulk
    assert taken[-1] == "bulk"


async def test_one_slot_is_shared_but_transactional_first() -> None:
    slots = LaneSlots(1, reserve=1)
    taken: list[str] = []
    await started(slots, "bulk", taken)
    bulk = await started(slots, "bulk", taken)
    transactional = await started(slots, "transactional", taken)
    slots.release()
    await transactional
    assert not bulk.done()
    slots.release()
    await bulk
    assert taken == ["bulk", "transactional", "bulk"]


async def test_a_cancelled_waiter_gives_its_turn_on() -> None:
    slots = LaneSlots(2, reserve=1)
    taken: list[str] = []
    await started(slots, "transactional", taken)
    await started(slots, "transactional", taken)
    waiting = await started(slots, "transactional", taken)
    bulk = await started(slots, "bulk", taken)
    waiting.cancel()
    await asyncio.sleep(0)
    slots.release()
    slots.release()
    await bulk
    assert taken == ["transactional", "transactional", "bulk"]
