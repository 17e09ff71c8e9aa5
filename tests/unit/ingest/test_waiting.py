"""A bounded wait re-reads until the answer is final, and gives up at its deadline."""

from __future__ import annotations

import time

from services.ingest.waiting import settled


async def test_returns_as_soon_as_the_value_is_final() -> None:
    values = iter(["Pending", "Pending", "Success"])
    reads: list[str] = []

    async def read() -> str:
        reads.append(next(values))
        return reads[-1]

    started = time.monotonic()
    assert await settled(read, lambda v: v != "Pending", 10) == "Success"
    assert reads == ["Pending", "Pending", "Success"]
    assert time.monotonic() - started < 1


async def test_returns_the_last_value_at_the_deadline() -> None:
    reads = 0

    async def read() -> int:
        nonlocal reads
        reads += 1
        return reads

    started = time.monotonic()
    last = await settled(read, lambda _: False, 0.3)
    assert 0.3 <= time.monotonic() - started < 1
    assert last == reads >= 3


async def test_no_wait_reads_once() -> None:
    reads = 0

    async def read() -> str:
        nonlocal reads
        reads += 1
        return "Pending"

    assert await settled(read, lambda v: v != "Pending", 0) == "Pending"
    assert reads == 1
