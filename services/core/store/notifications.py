"""The `notifications` collection: state and counters of each send request.

States move forward only: (scheduled ->) accepted -> resolving -> sending -> done, and
any state before `done` may end `cancelled` instead. `done` and `cancelled` are final
(FINAL): nothing moves a notification out of them, and each is set once, with its time
(`ended`). A notification's callback, if it asked for one, reports its final state once
(`claim_callback`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.core.events import FanoutCompleted, SendRequest, utc_now
from services.core.store.client import Document
from services.core.store.schedules import SchedulesRepository

# Every state a notification can be in, in order.
STATES = ("scheduled", "accepted", "resolving", "sending", "done", "cancelled")
# The states a notification ends in; a cancel stops one in any other.
FINAL = ("done", "cancelled")
COUNTERS = (
    "targeted",
    "sent",
    "failed",
    "invalid",
    # Jobs the sender dropped, their notification cancelled before their provider call.
    "cancelled",
    "delivered",
    "opened",
    "clicked",
    "dismissed",
)
# Outcomes that end a job, and the counter each one adds to.
TERMINAL = {
    "success": "sent",
    "failed": "failed",
    "invalid_token": "invalid",
    "cancelled": "cancelled",
}
# The ids of counted batches and the fan-out's checkpoint are bookkeeping, never part of
# what a reader gets.
_NO_BATCHES = {"counted_batches": 0, "fanout_checkpoint": 0}


def _new(request: SendRequest, state: str, idempotency_id: str | None = None) -> Document:
    now = utc_now()
    if state == "accepted" and request.scheduled(now):
        state = "scheduled"
    document: Document = {
        "_id": request.notification_id,
        "account_id": request.account_id,
        "app_id": request.app_id,
        "state": state,
        "counters": dict.fromkeys(COUNTERS, 0),
        "by_platform": {},
        "content": _content(request),
        "audience": _audience(request),
        # Kept for feedback, which makes the calls; never part of what a status shows (the
        # signature would let anyone who reads it sign calls as Pushline).
        "callback": (
            request.callback.model_dump(mode="json") if request.callback is not None else None
        ),
        "created": now,
        "updated": now,
    }
    if request.send_at is not None:
        document["send_at"] = request.send_at
    if idempotency_id is not None:
        # Retention removes the key with the notification.
        document["idempotency_id"] = idempotency_id
    return document


def _content(request: SendRequest) -> Document:
    """What the send carries, as its status shows it."""
    return {
        "notification": request.notification.model_dump(mode="json"),
        "localized": {
            language: content.model_dump(mode="json")
            for language, content in request.localized.items()
        },
        "data": dict(request.data),
        "options": request.options.model_dump(mode="json"),
    }


def _audience(request: SendRequest) -> Document:
    """Who the send is for, in counts: raw tokens and contact values are never kept here
    (a status is read back by the caller, a token only ever through its hash)."""
    to = request.to
    return {
        "all": to.all,
        "tokens": len(to.tokens),
        "contact_ids": len(to.contact_ids),
        "cellphones": len(to.cellphones),
        "emails": len(to.emails),
        "platforms": list(to.platforms),
        # The segment as given: conditions on tags and device fields, never a token.
        "filters": (to.filters.model_dump(mode="json", exclude_none=True) if to.filters else None),
    }


def counters_of(notification: Document) -> dict[str, int]:
    """A notification's counters, every one of COUNTERS present, as callers read them."""
    counters = notification.get("counters") or {}
    return {name: int(counters.get(name, 0)) for name in COUNTERS}


class NotificationsRepository:
    """State and counters of notifications."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._notifications = db.notifications
        self._schedules = SchedulesRepository(db)

    async def accept(self, request: SendRequest, idempotency_id: str | None = None) -> None:
        """Record an accepted request (the ingest does this before publishing it), with the
        `_id` of the idempotency key it claimed, if any; `scheduled` when its `send_at` is
        ahead."""
        await self._notifications.insert_one(_new(request, "accepted", idempotency_id))

    async def schedule(self, request: SendRequest) -> bool:
        """Record the request as `scheduled` until its `send_at` (a request published
        straight on Kafka was never recorded); False when it has moved on since (started,
        cancelled): it is not to be scheduled again."""
        result = await self._notifications.update_one(
            {"_id": request.notification_id, "state": {"$in": ["scheduled", "accepted"]}},
            {"$set": {"state": "scheduled", "send_at": request.send_at, "updated": utc_now()}},
        )
        if result.matched_count:
            return True
        try:
            await self._notifications.insert_one(_new(request, "scheduled"))
        except DuplicateKeyError:
            return False
        return True

    async def release(self, notification_id: str) -> bool:
        """Move a scheduled notification that is due to `accepted` (again, for one whose
        start was interrupted); False when it is no longer to start (cancelled, or started
        before)."""
        result = await self._notifications.update_one(
            {"_id": notification_id, "state": {"$in": ["scheduled", "accepted"]}},
            {"$set": {"state": "accepted", "updated": utc_now()}},
        )
        return bool(result.matched_count)

    async def cancel(self, notification_id: str, account_id: str) -> Document | None:
        """Cancel the account's notification unless it has ended; the notification as it
        stands afterwards (`cancelled`, or `done` when it ended first), None when the
        account has no such notification. Safe to repeat."""
        if await self._end({"_id": notification_id, "account_id": account_id}, "cancelled"):
            # A schedule left behind (a cancel racing its creation) is dropped when due.
            await self._schedules.remove(notification_id)
        found = await self.get(notification_id)
        if found is None or found.get("account_id") != account_id:
            return None
        return found

    async def state(self, notification_id: str) -> str | None:
        """The notification's state, None if there is none."""
        found = await self._notifications.find_one({"_id": notification_id}, {"state": 1})
        return None if found is None else str(found["state"])

    async def cancelled_among(self, notification_ids: Iterable[str]) -> set[str]:
        """Which of these notifications are cancelled (one read by `_id`)."""
        cursor = self._notifications.find({"_id": {"$in": list(notification_ids)}}, {"state": 1})
        return {doc["_id"] async for doc in cursor if doc["state"] == "cancelled"}

    async def start_resolving(self, request: SendRequest) -> bool:
        """Move an accepted (or never seen: published straight on Kafka, or scheduled and
        read only once due) request to `resolving`; False once its fan-out has completed
        (a redelivered request) or it was cancelled.

        A request still `resolving` is resolved again: the worker that began it died before
        finishing, and the jobs it already produced are recognised downstream by
        (notification id, token).
        """
        result = await self._notifications.update_one(
            {
                "_id": request.notification_id,
                "state": {"$in": ["scheduled", "accepted", "resolving"]},
            },
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
        """Set `sending` once the fan-out is known, `done` once every job has ended; a
        cancelled notification stays cancelled (its counters still grow)."""
        doc = await self._notifications.find_one({"_id": notification_id}, _NO_BATCHES)
        if doc is None or doc.get("state") in FINAL or not doc.get("fanout_done"):
            return
        counters = doc["counters"]
        ended = sum(counters.get(name, 0) for name in TERMINAL.values())
        done = doc.get("dry_run") or ended >= counters["targeted"]
        if done:
            await self._end({"_id": notification_id}, "done")
        elif doc["state"] != "sending":
            await self._notifications.update_one(
                {"_id": notification_id, "state": {"$nin": list(FINAL)}},
                {"$set": {"state": "sending", "updated": utc_now()}},
            )

    async def unclaimed_callbacks(self, notification_ids: Collection[str]) -> list[str]:
        """Those of the notifications that are in a FINAL state and asked for a callback no
        one has claimed yet (one read by `_id`)."""
        cursor = self._notifications.find(
            {
                "_id": {"$in": list(notification_ids)},
                "state": {"$in": list(FINAL)},
                "callback": {"$ne": None},
                "callback_fired": {"$exists": False},
            },
            {"_id": 1},
        )
        return [doc["_id"] async for doc in cursor]

    async def claimed_callback(self, notification_id: str) -> Document | None:
        """The notification, if its callback was claimed."""
        return await self._notifications.find_one(
            {"_id": notification_id, "callback_fired": {"$exists": True}}, _NO_BATCHES
        )

    async def claim_callback(self, notification_id: str) -> Document | None:
        """The notification, if it is in a FINAL state, asked for a callback, and no one
        claimed that callback before: this call claims it (atomically, so a redelivered
        event or a second worker finds it claimed and gets None)."""
        return await self._notifications.find_one_and_update(
            {
                "_id": notification_id,
                "state": {"$in": list(FINAL)},
                "callback": {"$ne": None},
                "callback_fired": {"$exists": False},
            },
            {"$set": {"callback_fired": utc_now()}},
            projection=_NO_BATCHES,
            return_document=ReturnDocument.AFTER,
        )

    async def release_callback(self, notification_id: str) -> None:
        """Give up a claim whose call could not be queued, so that the retry claims it."""
        await self._notifications.update_one(
            {"_id": notification_id}, {"$unset": {"callback_fired": ""}}
        )

    async def callbacks(self, notification_ids: Collection[str]) -> dict[str, Document]:
        """The callbacks of those of the notifications that asked for one, by id."""
        cursor = self._notifications.find(
            {"_id": {"$in": list(notification_ids)}, "callback": {"$ne": None}}, {"callback": 1}
        )
        return {doc["_id"]: doc["callback"] async for doc in cursor}

    async def _end(self, query: Document, state: str) -> bool:
        """Move the notification `query` names, unless it has ended, to the final `state`
        (`done` or `cancelled`) with the time it ended (`ended`). True for the one call that
        ended it, however many race: what may act once on its end."""
        now = utc_now()
        result = await self._notifications.update_one(
            {**query, "state": {"$nin": list(FINAL)}},
            {"$set": {"state": state, "ended": now, "updated": now}},
        )
        return bool(result.modified_count)

    async def get(self, notification_id: str) -> Document | None:
        """The notification document, or None."""
        return await self._notifications.find_one({"_id": notification_id}, _NO_BATCHES)

    async def page(
        self,
        account_id: str,
        *,
        app_id: str | None,
        state: str | None,
        after: str | None,
        limit: int,
    ) -> list[Document]:
        """Up to `limit` notifications of the account (of one app and in one state, when
        given), in `_id` order from the one after `after`: one page of a listing.

        MongoDB narrows by its `app` index; the local store scans this collection, which
        retention keeps to the recent notifications.
        """
        query: Document = {"account_id": account_id}
        if app_id is not None:
            query["app_id"] = app_id
        if state is not None:
            query["state"] = state
        if after is not None:
            query["_id"] = {"$gt": after}
        cursor = self._notifications.find(query, _NO_BATCHES).sort("_id", 1).limit(limit)
        return await cursor.to_list(None)
