"""The provider quota governor: every sender process shares one budget per quota scope.

A scope is what a provider counts its quota against (`Provider.quota_scope`): an FCM
project, an APNs team, a Web Push push service (the endpoint's origin). Its budget, sends
per second, is the operator's (`PUSHLINE_PROVIDER_QUOTAS`, by `provider:scope`, then by
`provider`) or the provider's published default (`Provider.default_quota`: FCM's 10,000 a
second); a scope without one is not counted. Before a provider call, the dispatcher waits
until each scope of the call's jobs has a token per job, from a bucket every sender shares
(services.core.buckets, in leases: one store call per tenth of a second of budget), with a
second's budget at once: the fleet slows down before the provider has to say 429.

The priority lanes: bulk calls also take tokens from a second bucket of BULK_SHARE of the
budget, so that the fleet's bulk calls never take the whole of it and a transactional call
of any sender finds a tenth left for it; within a sender, a transactional call waiting for
a scope goes before its bulk calls.

When the provider says 429 all the same, for the whole scope (`pauses_scope_on_429`), every
sender leaves the scope alone for the answer's Retry-After: the pause is written to the
store (services.core.store.pauses) and each process reads a scope's pause at most once a
second, so the others stop within a second. The job itself is retried as any other, by the
retry policy.

A call waits outside the marks and the wire: a send that has not started is not on the
wire, so a revocation does not wait for it, and the wait gives up (the jobs stay
unacknowledged, for the partitions' next owner or the next start) once the caller says so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from pymongo.asynchronous.database import AsyncDatabase

from services.core import metrics
from services.core.buckets import Leases, Rate
from services.core.events import PushJob
from services.core.outages import is_outage
from services.core.providers.base import Provider, Result
from services.core.store.buckets import Buckets
from services.core.store.client import Document
from services.core.store.pauses import ProviderPauses

log = logging.getLogger(__name__)

# How stale a process's view of a scope's pause may be.
PAUSE_READ_SECONDS = 1.0
# The longest a waiting call sleeps before it asks whether to give up.
CHECK_SECONDS = 1.0
# Scopes whose pause a process remembers before it forgets those not paused.
_REMEMBERED = 10_000
# How often a bulk call waiting behind transactional ones for a scope looks again.
YIELD_SECONDS = 0.05
# The share of a scope's budget bulk calls may take, fleet-wide: the rest is kept for
# transactional calls, whichever sender makes them.
BULK_SHARE = 0.9


def budget(quotas: Mapping[str, float], provider: type[Provider], scope: str) -> Rate | None:
    """The scope's budget: its own in `quotas`, else its provider's there, else the
    provider's default; None when that is none (or 0). A second's worth at once."""
    per_second = quotas.get(
        f"{provider.name}:{scope}", quotas.get(provider.name, provider.default_quota)
    )
    if not per_second:
        return None
    return Rate(per_second, max(1.0, per_second))


def bulk_share(rate: Rate) -> Rate:
    """The part of a scope's budget its bulk calls may take (BULK_SHARE of it)."""
    return Rate(rate.per_second * BULK_SHARE, max(1.0, rate.burst * BULK_SHARE))


def label(quotas: Mapping[str, float], provider: type[Provider], scope: str) -> str:
    """The scope as metrics name it: itself, unless it comes from devices and the operator
    did not name it (callers' input, unbounded), then `other`."""
    if provider.scopes_from_devices and f"{provider.name}:{scope}" not in quotas:
        return "other"
    return scope


def pauses(
    provider: Provider, jobs: Sequence[PushJob], results: Sequence[Result], now: float
) -> dict[str, float]:
    """The scopes a call's answers pause, by `provider:scope`, until when (epoch seconds):
    those of its 429 answers that say how long, when the provider's 429 is the scope's."""
    if not provider.pauses_scope_on_429:
        return {}
    paused: dict[str, float] = {}
    for job, result in zip(jobs, results, strict=True):
        scope = provider.quota_scope(job)
        if result.status != 429 or scope is None or not result.retry_after:
            continue
        key = f"{provider.name}:{scope}"
        paused[key] = max(paused.get(key, 0.0), now + result.retry_after)
    return paused


@dataclass
class _Pause:
    until: float = 0.0  # epoch seconds
    read_at: float = float("-inf")  # monotonic seconds


class Pauses:
    """One process's view of the scopes' pauses: read from the store at most once per
    PAUSE_READ_SECONDS a scope, and its own 429s at once."""

    def __init__(
        self,
        read: Callable[[str], Awaitable[float]],
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`read`: the store's pause of a scope (`ProviderPauses.until`); `clock`: epoch
        seconds; `monotonic`: monotonic seconds."""
        self._read = read
        self._clock = clock
        self._monotonic = monotonic
        self._known: dict[str, _Pause] = {}

    async def left(self, key: str) -> float:
        """Seconds the scope `key` is still paused (0 when it is not). Raises what the
        store raises."""
        pause = self._known.get(key)
        now = self._monotonic()
        if pause is None or now - pause.read_at >= PAUSE_READ_SECONDS:
            until = await self._read(key)
            if pause is None:
                self._forget_unpaused()
                pause = self._known.setdefault(key, _Pause())
            pause.until = max(pause.until, until)
            pause.read_at = now
        return max(0.0, pause.until - self._clock())

    def note(self, key: str, until: float) -> None:
        """This process learnt that the scope `key` is paused until `until`."""
        pause = self._known.setdefault(key, _Pause())
        pause.until = max(pause.until, until)

    def _forget_unpaused(self) -> None:
        if len(self._known) < _REMEMBERED:
            return
        now = self._clock()
        for key, pause in list(self._known.items()):
            if pause.until <= now:
                del self._known[key]


class Governor:
    """The senders' shared budgets and pauses, one per sender process."""

    def __init__(self, db: AsyncDatabase[Document], quotas: Mapping[str, float]) -> None:
        """`quotas`: PUSHLINE_PROVIDER_QUOTAS."""
        self._quotas = quotas
        self._leases = Leases(Buckets(db).claim)
        self._store = ProviderPauses(db)
        self._pauses = Pauses(self._store.until)
        # Transactional calls of this process waiting for each scope's budget, by key.
        self._ahead: Counter[str] = Counter()

    async def admit(
        self, provider: Provider, jobs: Sequence[PushJob], given_up: Callable[[], bool]
    ) -> bool:
        """Wait until every quota scope of `jobs` lets them be sent, and take its budget;
        False, with the call not to be made, when `given_up()` says so meanwhile. Raises
        what the store raises."""
        scopes = Counter(scope for job in jobs if (scope := provider.quota_scope(job)))
        bulk = bool(jobs) and jobs[0].lane == "bulk"
        for scope, sends in scopes.items():
            if not await self._admit(provider, scope, sends, given_up, bulk):
                return False
        return True

    async def answered(
        self, provider: Provider, jobs: Sequence[PushJob], results: Sequence[Result]
    ) -> None:
        """Pause the scopes whose 429 answers among `results` say so, for every sender.
        A store outage is not raised: the call is over, and this process's pause holds."""
        for key, until in pauses(provider, jobs, results, time.time()).items():
            self._pauses.note(key, until)
            scope = label(self._quotas, type(provider), key.partition(":")[2])
            metrics.PROVIDER_QUOTA_PAUSES.labels(provider.name, scope).inc()
            log.warning(
                "provider answered 429: quota scope paused",
                extra={
                    "provider": provider.name,
                    "scope": scope,
                    "seconds": round(until - time.time(), 1),
                },
            )
            try:
                await self._store.pause(key, until)
            except Exception as exc:
                if not is_outage(exc):
                    raise
                log.warning("store unavailable; the pause holds in this sender only")

    async def _admit(
        self,
        provider: Provider,
        scope: str,
        sends: int,
        given_up: Callable[[], bool],
        bulk: bool,
    ) -> bool:
        cls = type(provider)
        key = f"{provider.name}:{scope}"
        rate = budget(self._quotas, cls, scope)
        labels = (provider.name, label(self._quotas, cls, scope))
        if rate is not None:
            metrics.PROVIDER_QUOTA_BUDGET.labels(*labels).set(rate.per_second)
        left = sends if rate is not None else 0
        waited = 0.0
        # Whether the part of the call being admitted has its bulk tokens already.
        capped = False
        if not bulk:
            self._ahead[key] += 1
        try:
            while True:
                wait = await self._pauses.left(key)
                if wait == 0 and left > 0:
                    assert rate is not None
                    if bulk and self._ahead[key]:
                        # Transactional calls of this sender wait for the scope: they
                        # take its tokens first, as they take the sender's slots first.
                        wait = YIELD_SECONDS
                    else:
                        share = bulk_share(rate) if bulk else rate
                        # A call may need more than the bucket ever holds at once.
                        part = min(left, int(share.burst))
                        if bulk and not capped:
                            wait = await self._leases.take(f"quota:{key}:bulk", share, part)
                            capped = wait == 0
                        if wait == 0:
                            wait = await self._leases.take(f"quota:{key}", rate, part)
                            if wait == 0:
                                left -= part
                                capped = False
                                continue
                if wait == 0:
                    break
                if given_up():
                    return False
                step = min(wait, CHECK_SECONDS)
                await asyncio.sleep(step)
                waited += step
        finally:
            if not bulk:
                self._ahead[key] -= 1
                if not self._ahead[key]:
                    del self._ahead[key]
        if rate is not None:
            metrics.PROVIDER_QUOTA_USED.labels(*labels).inc(sends)
        if waited:
            metrics.PROVIDER_QUOTA_THROTTLED.labels(*labels).inc(sends)
            metrics.PROVIDER_QUOTA_WAIT_SECONDS.labels(*labels).inc(waited)
        return True
