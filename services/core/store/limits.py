"""Each account's rate limits: the `limits` field of its `accounts` document.

`{requests_per_second, requests_burst, app_sends_per_second, app_sends_burst,
notifications_per_second}`, each absent or null for the operator's default
(`PUSHLINE_RATE_*`). The ingest takes `requests` from every call of the account and
`app_sends` from every send naming an app (a bucket per app); the resolver paces the
account's fan-outs at `notifications_per_second` (services.core.buckets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pymongo.asynchronous.database import AsyncDatabase

from services.core.buckets import Rate
from services.core.errors import NotFoundError
from services.core.settings import Settings
from services.core.store.client import Document

PerSecond = Annotated[float, Field(gt=0, le=1_000_000)]
Burst = Annotated[int, Field(ge=1, le=10_000_000)]


class Limits(BaseModel):
    """An account's rate limits; a field left out or null takes the operator's default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    requests_per_second: PerSecond | None = None
    requests_burst: Burst | None = None
    app_sends_per_second: PerSecond | None = None
    app_sends_burst: Burst | None = None
    notifications_per_second: PerSecond | None = None

    def rates(self, settings: Settings) -> Rates:
        """These limits with the defaults of `settings` where none is set."""
        notifications = self.notifications_per_second or settings.rate_notifications_per_second
        return Rates(
            requests=Rate(
                self.requests_per_second or settings.rate_requests_per_second,
                self.requests_burst or settings.rate_requests_burst,
            ),
            app_sends=Rate(
                self.app_sends_per_second or settings.rate_app_sends_per_second,
                self.app_sends_burst or settings.rate_app_sends_burst,
            ),
            # A second's notifications at once.
            notifications=Rate(notifications, max(1.0, notifications)),
        )


@dataclass(frozen=True)
class Rates:
    """The limits an account is held to."""

    requests: Rate
    app_sends: Rate
    notifications: Rate

    def shown(self) -> dict[str, float]:
        """As the admin API and CLI show them."""
        return {
            "requests_per_second": self.requests.per_second,
            "requests_burst": self.requests.burst,
            "app_sends_per_second": self.app_sends.per_second,
            "app_sends_burst": self.app_sends.burst,
            "notifications_per_second": self.notifications.per_second,
        }


def view(account_id: str, limits: Limits, settings: Settings) -> dict[str, object]:
    """What the admin API and CLI show of an account's limits: as set (null: the default)
    and as they apply."""
    return {
        "account_id": account_id,
        "limits": limits.model_dump(),
        "effective": limits.rates(settings).shown(),
    }


class AccountLimits:
    """The `limits` of accounts."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._collection = db["accounts"]

    async def get(self, account_id: str) -> Limits | None:
        """The account's limits (all defaults when none were set); None for no account."""
        found = await self._collection.find_one({"_id": account_id}, {"limits": 1})
        if found is None:
            return None
        return Limits.model_validate(found.get("limits") or {})

    async def set(self, account_id: str, limits: Limits) -> None:
        """Replace the account's limits. Raises NotFoundError for no such account."""
        result = await self._collection.update_one(
            {"_id": account_id}, {"$set": {"limits": limits.model_dump(exclude_none=True)}}
        )
        if result.matched_count == 0:
            raise NotFoundError(f"account {account_id} not found")
