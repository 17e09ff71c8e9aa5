"""The shared token buckets: the cell rate arithmetic, and one process's leases on a
bucket kept in memory here (the store keeps it the same way: tests/contract)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from services.core.buckets import HOLD_SECONDS, Leases, Rate, claim


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Store:
    """A bucket store in memory, on the same clock: the theoretical arrival times."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.tats: dict[str, float] = {}
        self.claims: list[float] = []

    async def claim(self, key: str, n: float, rate: Rate) -> float:
        self.claims.append(n)
        tat, wait = claim(self.tats.get(key, 0.0), self.clock(), n, rate)
        if tat is not None:
            self.tats[key] = tat
        return wait


def test_a_full_bucket_gives_its_burst_then_its_rate() -> None:
    rate = Rate(per_second=10, burst=5)
    tat, now, taken = 0.0, 100.0, 0
    while True:
        later, wait = claim(tat, now, 1, rate)
        if later is None:
            break
        tat, taken = later, taken + 1
    assert taken == 5
    # The next token is a tenth of a second away.
    assert wait == pytest.approx(0.1)
    assert claim(tat, now + 0.1, 1, rate)[0] is not None
    assert claim(tat, now + 0.1, 2, rate)[0] is None


def test_an_idle_bucket_fills_up_to_its_burst_only() -> None:
    rate = Rate(per_second=10, burst=5)
    # Idle for an hour: still five tokens, not 36,000.
    assert claim(100.0, 3700.0, 5, rate)[0] is not None
    assert claim(100.0, 3700.0, 6, rate)[0] is None


def test_a_rate_needs_a_positive_rate_and_a_whole_token() -> None:
    with pytest.raises(ValueError, match="a rate needs"):
        Rate(per_second=0, burst=10)
    with pytest.raises(ValueError, match="a rate needs"):
        Rate(per_second=10, burst=0.5)


def test_a_lease_is_a_tenth_of_a_seconds_tokens_within_the_burst() -> None:
    assert Rate(per_second=1000, burst=2000).lease(1) == 100
    assert Rate(per_second=1000, burst=50).lease(1) == 50
    assert Rate(per_second=5, burst=10).lease(1) == 1


async def test_leased_tokens_are_spent_without_the_store() -> None:
    clock = Clock()
    store = Store(clock)
    leases = Leases(store.claim, clock)
    rate = Rate(per_second=1000, burst=2000)
    for _ in range(250):
        assert await leases.take("a", rate) == 0
    # 100 tokens a lease: three store calls for 250 requests.
    assert store.claims == [100, 100, 100]


async def test_processes_share_one_bucket() -> None:
    clock = Clock()
    store = Store(clock)
    rate = Rate(per_second=10, burst=20)
    processes = [Leases(store.claim, clock) for _ in range(3)]
    taken = 0
    for _ in range(20):
        for leases in processes:
            taken += await leases.take("a", rate) == 0
    # Three processes, each asking 20 times: the bucket's 20 tokens between them.
    assert taken == 20


async def test_the_last_tokens_go_one_by_one_and_a_refusal_is_remembered() -> None:
    clock = Clock()
    store = Store(clock)
    leases = Leases(store.claim, clock)
    rate = Rate(per_second=100, burst=25)
    taken = 0
    while await leases.take("a", rate) == 0:
        taken += 1
    # Leases of 10, then the last five one at a time: none stranded.
    assert taken == 25
    asked = len(store.claims)
    wait = await leases.take("a", rate)
    assert wait == pytest.approx(0.01)
    # Refused: asked again before that time, it answers without the store.
    assert len(store.claims) == asked
    clock.now += wait
    assert await leases.take("a", rate) == 0


async def test_unused_leased_tokens_lapse() -> None:
    clock = Clock()
    store = Store(clock)
    leases = Leases(store.claim, clock)
    rate = Rate(per_second=100, burst=100)
    assert await leases.take("a", rate) == 0
    clock.now += HOLD_SECONDS
    # The nine tokens left of the lease are gone; the bucket (full again) gives anew.
    assert await leases.take("a", rate) == 0
    assert store.claims == [10, 10]


async def test_buckets_are_apart_by_key() -> None:
    clock = Clock()
    store = Store(clock)
    leases = Leases(store.claim, clock)
    rate = Rate(per_second=1, burst=1)
    assert await leases.take("a", rate) == 0
    assert await leases.take("a", rate) > 0
    assert await leases.take("b", rate) == 0


async def test_wait_sleeps_until_the_tokens_are_there() -> None:
    store = Store(time.monotonic)
    leases = Leases(store.claim)
    rate = Rate(per_second=50, burst=1)
    assert await leases.wait("a", rate) == 0
    started = time.monotonic()
    # A fiftieth of a second per token.
    waited = await leases.wait("a", rate)
    elapsed = time.monotonic() - started
    assert 0.015 <= waited <= 0.03
    assert elapsed >= 0.015
