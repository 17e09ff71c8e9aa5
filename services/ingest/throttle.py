"""Per-account rate limits at the ingest: every call of an account takes a token of its
`requests` bucket, every send naming an app one of that app's `app_sends` bucket as well.
An empty bucket is a 429 with `Retry-After`, in the dialect's own shape.

The buckets are shared by every ingest process through the store, in leases
(services.core.buckets: the bound on what the fleet admits beyond a limit is there); an
account's limits (services.core.store.limits) are read again after the lookup cache's
seconds, so a change reaches every ingest process within them.
"""

from __future__ import annotations

from fastapi import Request
from pymongo.asynchronous.database import AsyncDatabase

from services.core import metrics
from services.core.buckets import Leases, Rate
from services.core.settings import Settings
from services.core.store.buckets import Buckets
from services.core.store.client import Document
from services.core.store.limits import AccountLimits, Limits, Rates
from services.ingest.cache import TTLCache
from services.ingest.refusals import Refusal

# Accounts whose limits the cache holds at most.
_CACHED = 10_000


class Throttle:
    """The ingest's rate limits."""

    def __init__(self, db: AsyncDatabase[Document], settings: Settings) -> None:
        self._limits = AccountLimits(db)
        self._known: TTLCache[str, Rates] = TTLCache(settings.ingest_cache_seconds, _CACHED)
        self._leases = Leases(Buckets(db).claim)
        self._settings = settings

    async def request(self, request: Request, account_id: str) -> None:
        """Count a call of the account, once per request. Raises Refusal (429) when the
        account's `requests` limit is reached."""
        counted: set[str] = getattr(request.state, "throttled", set())
        if account_id in counted:
            return
        request.state.throttled = counted | {account_id}
        rate = (await self._rates(account_id)).requests
        await self._take(f"requests:{account_id}", rate, "requests", "requests")

    async def send(self, account_id: str, app_id: str) -> None:
        """Count a send of the account's app. Raises Refusal (429) when the app's
        `app_sends` limit is reached."""
        rate = (await self._rates(account_id)).app_sends
        await self._take(
            f"sends:{account_id}:{app_id}", rate, "app_sends", f"sends of app {app_id}"
        )

    async def _take(self, key: str, rate: Rate, limit: str, what: str) -> None:
        wait = await self._leases.take(key, rate)
        if wait > 0:
            metrics.THROTTLED.labels(limit).inc()
            raise Refusal(
                429,
                f"rate limit reached: {rate.per_second:g} {what} per second "
                f"(bursts of {rate.burst:g}); retry after {wait:.1f} s",
                retry_after=wait,
            )

    async def _rates(self, account_id: str) -> Rates:
        rates = self._known.get(account_id)
        if rates is None:
            rates = ((await self._limits.get(account_id)) or Limits()).rates(self._settings)
            self._known.put(account_id, rates)
        return rates


def throttle_of(request: Request) -> Throttle:
    """The Throttle the ingest's lifespan built."""
    found = request.app.state.throttle
    assert isinstance(found, Throttle)
    return found
