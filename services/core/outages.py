"""Riding out an outage of the store or the broker inside a worker.

A worker whose store or broker stops answering pauses the work at hand and tries it again,
with a growing wait, until it succeeds: what it holds is not acknowledged meanwhile, so
nothing is lost, and the work is written to be safe to repeat. Any other error is a bug
and propagates, and so does the outage once the worker is stopping: a worker that held on
to its unacknowledged input would never finish stopping, while its input is redelivered
to whoever owns the partition next.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaError, KafkaTimeoutError
from pymongo.errors import ConnectionFailure

from services.core import metrics
from services.core.errors import KafkaUnavailableError, StoreUnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")

# The first wait after a failure, and the longest.
FIRST_WAIT = 0.5
LONGEST_WAIT = 10.0


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` says the store or the broker did not answer (worth trying again)."""
    if isinstance(exc, ConnectionFailure | KafkaTimeoutError):
        return True
    if isinstance(exc, KafkaUnavailableError | StoreUnavailableError):
        return True
    return isinstance(exc, KafkaError) and bool(exc.retriable)


def _never() -> bool:
    return False


async def until_done(
    work: Callable[[], Awaitable[T]], what: str, stopping: Callable[[], bool] = _never
) -> T:
    """Await `work()`; while it fails with an outage, wait and call it again, until
    `stopping()` says the worker is on its way out."""
    wait = FIRST_WAIT
    while True:
        try:
            return await work()
        except Exception as exc:
            if not is_outage(exc) or stopping():
                raise
            metrics.OUTAGE_RETRIES.labels(what).inc()
            log.warning(
                "store or broker unavailable; retrying",
                extra={"work": what, "error": type(exc).__name__, "retry_in": wait},
            )
            await asyncio.sleep(wait)
            wait = min(wait * 2, LONGEST_WAIT)
