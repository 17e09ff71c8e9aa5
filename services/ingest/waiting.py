"""Answering once something the pipeline does has happened, within a bounded wait.

The ingest only publishes; the workers decide later and record it in the store. A caller
that wants the decision in its answer (`?wait=` on a registration) or whose request
depends on one (an interaction event right after the send it reports on) waits here,
re-reading the store with a growing interval so a long wait costs few reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

FIRST_INTERVAL = 0.05
LONGEST_INTERVAL = 0.5


async def settled(read: Callable[[], Awaitable[T]], done: Callable[[T], bool], seconds: float) -> T:
    """Call `read` until what it returns is `done`, or `seconds` have passed; return the
    last value read (read at least once, and once more at the deadline)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    interval = FIRST_INTERVAL
    while True:
        value = await read()
        left = deadline - loop.time()
        if done(value) or left <= 0:
            return value
        await asyncio.sleep(min(interval, left))
        interval = min(interval * 2, LONGEST_INTERVAL)
