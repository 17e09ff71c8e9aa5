"""The resolver's send requests in tasks of their own: one held back does not hold back
the next, a send and its cancel stay in order, and an error stops the worker."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from services.resolver.pacing import CONCURRENT, Requests


async def never_crashes(exc: BaseException) -> None:
    raise AssertionError(f"crashed: {exc!r}")


async def test_a_request_held_back_does_not_hold_back_the_next() -> None:
    requests = Requests(never_crashes, lambda: False)
    release = asyncio.Event()
    done: list[str] = []

    def finishing(name: str) -> Callable[[], Awaitable[None]]:
        async def mark() -> None:
            done.append(name)

        return mark

    async def campaign() -> None:
        await release.wait()

    async def transactional() -> None:
        pass

    await requests.start(b"campaign", campaign, finishing("campaign"))
    await requests.start(b"order", transactional, finishing("order"))
    await asyncio.sleep(0.01)
    assert done == ["order"]
    release.set()
    await asyncio.sleep(0.01)
    assert done == ["order", "campaign"]


async def test_requests_with_one_key_run_in_the_order_taken() -> None:
    requests = Requests(never_crashes, lambda: False)
    release = asyncio.Event()
    seen: list[str] = []

    async def send() -> None:
        await release.wait()
        seen.append("send")

    async def cancel() -> None:
        seen.append("cancel")

    async def nothing() -> None:
        pass

    await requests.start(b"n-1", send, nothing)
    await requests.start(b"n-1", cancel, nothing)
    await asyncio.sleep(0.01)
    assert seen == []
    release.set()
    await asyncio.sleep(0.01)
    assert seen == ["send", "cancel"]


async def test_at_most_so_many_at_once_and_stop_cancels_them() -> None:
    requests = Requests(never_crashes, lambda: False)
    forever = asyncio.Event()

    async def nothing() -> None:
        pass

    async def held() -> None:
        await forever.wait()

    for index in range(CONCURRENT):
        await requests.start(str(index).encode(), held, nothing)
    waiting = asyncio.ensure_future(requests.start(b"one more", nothing, nothing))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await requests.stop()
    await asyncio.wait_for(waiting, 1)


async def test_an_error_is_handed_to_the_worker() -> None:
    crashed: list[BaseException] = []

    async def crash(exc: BaseException) -> None:
        crashed.append(exc)

    async def broken() -> None:
        raise RuntimeError("bug")

    async def never_acked() -> None:
        raise AssertionError("acknowledged after an error")

    requests = Requests(crash, lambda: False)
    await requests.start(b"k", broken, never_acked)
    await asyncio.sleep(0.01)
    assert [str(exc) for exc in crashed] == ["bug"]


async def test_an_error_while_the_worker_stops_is_the_stop_s_not_a_crash() -> None:
    crashed: list[BaseException] = []

    async def crash(exc: BaseException) -> None:
        crashed.append(exc)

    async def store_closed() -> None:
        raise RuntimeError("the app has not started")

    async def never_acked() -> None:
        raise AssertionError("acknowledged after an error")

    requests = Requests(crash, lambda: True)
    await requests.start(b"k", store_closed, never_acked)
    await asyncio.sleep(0.01)
    assert crashed == []
