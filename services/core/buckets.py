"""Token buckets shared by every process of a service, taken from in small leases.

A bucket holds at most `burst` tokens and refills at `per_second`. Its state is one number
in the store (services.core.store.buckets), the *theoretical arrival time* of the generic
cell rate algorithm: the time at which the bucket would be full again. Taking `n` tokens
moves it `n / per_second` later, and is allowed while it stays within `burst / per_second`
of now (`claim`).

One store update per request would cost more than the request at thousands of requests per
second, so a process takes a *lease*: a tenth of a second's tokens at once (at least what
the request needs), spends them from memory, and asks the store again when they run out.
Tokens leased are gone from the bucket for every other process, so the fleet never takes
more than the bucket gives. A lease left unused for `HOLD_SECONDS` is dropped; until then
its tokens may be spent on top of what the bucket gives anew. So in any span of time the
fleet admits at most `burst + per_second * span`, plus one lease (a tenth of a second's
tokens) per process. A refusal is remembered until the time it named, so a caller that
keeps knocking costs no store call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

# A lease is this many seconds' worth of tokens (at least one request's).
LEASE_SECONDS = 0.1
# Seconds a process may hold leased tokens before it gives them up.
HOLD_SECONDS = 1.0
# Buckets a process remembers before it forgets the idle ones.
_REMEMBERED = 10_000


@dataclass(frozen=True)
class Rate:
    """Tokens per second, and at most `burst` of them at once (at least 1)."""

    per_second: float
    burst: float

    def __post_init__(self) -> None:
        if self.per_second <= 0 or self.burst < 1:
            raise ValueError(f"a rate needs per_second > 0 and burst >= 1, not {self}")

    def lease(self, cost: float) -> float:
        """The tokens a process takes from the store at once for a request of `cost`."""
        return max(cost, min(self.burst, self.per_second * LEASE_SECONDS))


def claim(tat: float, now: float, n: float, rate: Rate) -> tuple[float | None, float]:
    """Take `n` tokens from a bucket whose theoretical arrival time is `tat`, at `now`:
    the new `tat` and 0, or None and the seconds until `n` tokens are there."""
    later = max(tat, now) + n / rate.per_second
    limit = now + rate.burst / rate.per_second
    # Within a nanosecond: the sum of a burst's steps may round past the limit.
    if later <= limit + 1e-9:
        return later, 0.0
    return None, later - limit


# Takes `n` tokens of the bucket `key` from the store: 0 when taken, else the seconds
# until they are there.
Claim = Callable[[str, float, Rate], Awaitable[float]]


@dataclass
class _Held:
    tokens: float = 0.0
    # Monotonic times: when the tokens held lapse, and until when the store refused.
    until: float = 0.0
    refused_until: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Leases:
    """One process's side of the shared buckets: tokens leased from the store, spent here."""

    def __init__(self, claim_tokens: Claim, clock: Callable[[], float] = time.monotonic) -> None:
        """`claim_tokens`: the store's claim; `clock`: monotonic seconds."""
        self._claim = claim_tokens
        self._clock = clock
        self._held: dict[str, _Held] = {}

    async def take(self, key: str, rate: Rate, cost: float = 1.0) -> float:
        """Take `cost` tokens of the bucket `key`: 0 when taken, else the seconds to wait
        before asking again. Raises what the store raises."""
        held = self._held.get(key)
        if held is None:
            self._forget_idle()
            held = self._held[key] = _Held()
        async with held.lock:
            now = self._clock()
            if held.until <= now:
                held.tokens = 0.0
            if held.tokens >= cost:
                held.tokens -= cost
                return 0.0
            if held.refused_until > now:
                return held.refused_until - now
            lease = rate.lease(cost)
            wait = await self._claim(key, lease, rate)
            if wait > 0 and lease > cost:
                # Fewer tokens than a lease are left: the request may still have its own.
                lease = cost
                wait = await self._claim(key, lease, rate)
            if wait > 0:
                held.refused_until = now + wait
                return wait
            held.tokens = (held.tokens if held.until > now else 0.0) + lease - cost
            held.until = now + HOLD_SECONDS
            return 0.0

    async def wait(self, key: str, rate: Rate, cost: float = 1.0) -> float:
        """Take `cost` tokens of the bucket `key`, waiting until they are there; the
        seconds waited."""
        waited = 0.0
        while (pause := await self.take(key, rate, cost)) > 0:
            await asyncio.sleep(pause)
            waited += pause
        return waited

    def _forget_idle(self) -> None:
        if len(self._held) < _REMEMBERED:
            return
        now = self._clock()
        for key, held in list(self._held.items()):
            idle = held.until <= now and held.refused_until <= now
            if idle and not held.lock.locked():
                del self._held[key]
