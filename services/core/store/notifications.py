"""The `notifications` collection: state and counters of each send request.

States move forward only: accepted -> resolving -> sending -> done.
"""

from __future__ import annotations

from collections.abc import Mapping

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.core.events import FanoutCompleted, SendRequest, utc_now
from services.core.store.client import Document

COUNTERS = (
    "targeted",
    "sent",
    "failed",
    "invalid",
    "delivered",
    "opened",
    "clicked",
    "dismissed",
)
# Outcomes that end a job, and the counter each one adds to.
TERMINAL = {"success": "sent", "failed": "failed", "invalid_token": "invalid"}
# The ids of counted batches and the fan-out's checkpoint are bookkeeping, never part of
# what a reader gets.
_NO_BATCHES = {"counted_batches": 0, "fanout_checkpoint": 0}


def _new(request: SendRequest, state: str, idempotency_id: str | None = None) -> Document:
    now = utc_now()
    document: Document = {
        "_id": request.notification_id,
        "account_id": request.account_id,
        "app_id": request.app_id,
        "state": state,
        "counters": dict.fromkeys(COUNTERS, 0),
        "by_platform": {},
        "created": now,
        "updated": now,
    }
    if idempotency_id is not None:
        # Retention removes the key with the notification.
        document["idempotency_id"] = idempotency_id
    return document


class NotificationsRepository:
    """State and counters of notifications."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._notifications = db.notifications

    async def accept(self, request: SendRequest, idempotency_id: str | None = None) -> None:
        """Record an accepted request (the ingest does this before publishing it), with the
        `_id` of the idempotency key it claimed, if any."""
        await self._notifications.insert_one(_new(request, "accepted", idempotency_id))

    async def start_resolving(self, request: SendRequest) -> bool:
        """Move an accepted (or never seen: published straight on Kafka) request to
        `resolving`; False once its fan-out has completed (a redelivered request).

        A request still `resolving` is resolved again: the worker that began it died before
        finishing, and the jobs it already produced are recognised downstream by
        (notification id, token).
        """
        result = await self._notifications.update_one(
            {"_id": request.notification_id, "state": {"$in": ["accepted", "resolving"]}},
            {"$set": {"state": "resolving", "updated": utc_now()}},
        )
        if result.matched_count:
            return True
        try:
            await self._notifications.insert_one(_new(request, "resolving"))
        except DuplicateKeyError:
            return False
        return True

    async def save_checkpoint(self, notification_id: str, checkpoint: Document) -> None:
        """Keep where a `to.all` fan-out stands (see services/resolver/progress.py), while
        it is still resolving."""
        await self._notifications.update_one(
            {"_id": notification_id, "state": "resolving"},
            {"$set": {"fanout_checkpoint": checkpoint, "updated": utc_now()}},
        )

    async def checkpoint(self, notification_id: str) -> Document | None:
        """The last checkpoint saved for the notification's fan-out, if any."""
        found = await self._notifications.find_one(
            {"_id": notification_id}, {"fanout_checkpoint": 1}
        )
        return (found or {}).get("fanout_checkpoint")

    async def fanout_completed(self, event: FanoutCompleted) -> None:
        """Record how many jobs the resolver produced, then settle the state."""
        # Outcomes may be counted before this arrives (they travel on other partitions):
        # set each platform's `targeted` alone, never the whole `by_platform`.
        fields: Document = {
            "counters.targeted": event.jobs,
            "by_provider": dict(event.by_provider),
            "fanout_done": True,
            "dry_run": event.dry_run,
            "updated": utc_now(),
        }
        fields.update({f"by_platform.{p}.targeted": n for p, n in event.by_platform.items()})
        await self._notifications.update_one({"_id": event.notification_id}, {"$set": fields})
        await self.settle(event.notification_id)

    async def add_outcomes(
        self, notification_id: str, counts: Mapping[str, int], batch: str
    ) -> bool:
        """Add counter increments (`sent`, `android.sent`, ...) once per `batch`, then settle
        the state. False if `batch` was counted before (nothing added).

        The batch id is kept on the notification by the same atomic update that adds its
        counts, so a batch applied twice (a worker retried or replaced) counts once.
        """
        increments = {
            (f"by_platform.{key}" if "." in key else f"counters.{key}"): value
            for key, value in counts.items()
        }
        result = await self._notifications.update_one(
            {"_id": notification_id, "counted_batches": {"$ne": batch}},
            {
                "$inc": increments,
                "$set": {"updated": utc_now()},
                "$push": {"counted_batches": batch},
            },
        )
        await self.settle(notification_id)
        return bool(result.modified_count)

    async def counted(self, notification_id: str, batch: str) -> bool:
        """Whether `batch` was added to the notification's counters."""
        found = await self._notifications.find_one(
            {"_id": notification_id, "counted_batches": batch}, {"_id": 1}
        )
        return found is not None

    async def settle(self, notification_id: str) -> None:
        """Set `sending` once the fan-out is known, `done` once every job has ended."""
        doc = await self._notifications.find_one({"_id": notification_id}, _NO_BATCHES)
        if doc is None or doc.get("state") == "done" or not doc.get("fanout_done"):
            return
        counters = doc["counters"]
        ended = counters["sent"] + counters["failed"] + counters["invalid"]
        state = "done" if doc.get("dry_run") or ended >= counters["targeted"] else "sending"
        if state != doc["state"]:
            await self._notifications.update_one(
                {"_id": notification_id, "state": {"$ne": "done"}},
                {"$set": {"state": state, "updated": utc_now()}},
            )

    async def get(self, notification_id: str) -> Document | None:
        """The notification document, or None."""
        return await self._notifications.find_one({"_id": notification_id}, _NO_BATCHES)
