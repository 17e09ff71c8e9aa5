"""A worker rides out store and broker outages, and only those."""

from __future__ import annotations

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, MessageSizeTooLargeError
from pymongo.errors import AutoReconnect, DuplicateKeyError, ServerSelectionTimeoutError

from services.core.outages import is_outage, until_done


@pytest.mark.parametrize(
    "exc",
    [
        ServerSelectionTimeoutError("x"),
        AutoReconnect("x"),
        KafkaTimeoutError(),
        KafkaConnectionError(),
    ],
)
def test_store_and_broker_silence_is_an_outage(exc: Exception) -> None:
    assert is_outage(exc)


@pytest.mark.parametrize("exc", [DuplicateKeyError("x"), MessageSizeTooLargeError(), ValueError()])
def test_a_refusal_or_a_bug_is_not(exc: Exception) -> None:
    assert not is_outage(exc)


async def test_work_is_tried_again_until_the_outage_ends() -> None:
    failures = [ServerSelectionTimeoutError("store down"), KafkaTimeoutError()]

    async def work() -> str:
        if failures:
            raise failures.pop(0)
        return "done"

    assert await until_done(work, "test") == "done"
    assert failures == []


async def test_other_errors_propagate_at_once() -> None:
    calls = 0

    async def work() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        await until_done(work, "test")
    assert calls == 1
