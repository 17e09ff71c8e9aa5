"""A send's callbacks: the one POST that reports its end, and its per-device events.

Both are signed as registration callbacks are (seed 001): the body's `signature` is the
base64 HMAC-SHA256 of the callback URL keyed by the API key the send was made with. The
ingest computes it, the only place that sees the key in clear; the receiver, who knows its
key and URL, computes it again and compares.

`fire_final` is the one place a final callback is made, whichever FINAL state the
notification reached and whoever moved it there: the notification's store document is
claimed first, so the call is queued once however often it is asked for. A note written
before the claim and removed once Kafka has the call (services.core.store.callback_notes)
covers a worker killed in between: `sweep` (feedback, every SWEEP_INTERVAL) makes the call
of a note older than NOTE_GRACE. So the call is made at least once; twice only when its
worker is killed between Kafka's answer and the note's removal, or waits on Kafka longer
than the grace.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import timedelta

from pymongo.asynchronous.database import AsyncDatabase

from services.core.events import DeliveryOutcome, WebhookCall, utc_now
from services.core.store.callback_notes import CallbackNotes
from services.core.store.client import Document
from services.core.store.notifications import NotificationsRepository, counters_of

# Device events per POST, at most: a receiver's request stays small, a large send's
# events take few calls.
EVENTS_PER_CALL = 100

# How old a note of a final callback in the making is before a sweep makes the call: far
# longer than a live worker takes to get it on Kafka.
NOTE_GRACE = timedelta(minutes=5)
# Seconds between two sweeps of a feedback worker.
SWEEP_INTERVAL = 60.0

# Queues a webhook call on push.webhooks, returning once Kafka has it.
Queue = Callable[[WebhookCall], Awaitable[None]]


def final_call(notification: Document) -> WebhookCall:
    """The POST that reports a notification's final state and counters (those its status
    shows)."""
    callback = notification["callback"]
    return WebhookCall(
        webhook_id=f"notification:{uuid.uuid4().hex}",
        notification_id=notification["_id"],
        url=callback["url"],
        headers=callback.get("headers") or {},
        body={
            "type": "notification",
            "id": notification["_id"],
            "app_id": notification.get("app_id"),
            "state": notification["state"],
            "counters": dict(counters_of(notification)),
            "platforms": notification.get("by_platform") or {},
            "signature": callback.get("signature"),
        },
    )


def device_calls(
    notification_id: str, callback: Document, outcomes: Iterable[DeliveryOutcome]
) -> list[WebhookCall]:
    """The POSTs of the notification's device events its callback asked for, at most
    EVENTS_PER_CALL each. A device is named by its token's SHA-256, never by the token."""
    wanted = set(callback.get("events") or ())
    events: list[dict[str, str | None]] = [
        {
            "device_id": outcome.token_hash,
            "outcome": outcome.outcome,
            "reason": outcome.reason,
            "platform": outcome.platform,
            "at": outcome.answered_at.isoformat(),
        }
        for outcome in outcomes
        if outcome.notification_id == notification_id and outcome.outcome in wanted
    ]
    return [
        WebhookCall(
            webhook_id=f"devices:{uuid.uuid4().hex}",
            notification_id=notification_id,
            url=callback["url"],
            headers=callback.get("headers") or {},
            body={
                "type": "devices",
                "id": notification_id,
                "events": list(events[start : start + EVENTS_PER_CALL]),
                "signature": callback.get("signature"),
            },
        )
        for start in range(0, len(events), EVENTS_PER_CALL)
    ]


async def fire_final(
    db: AsyncDatabase[Document], notification_ids: Iterable[str], queue: Queue
) -> int:
    """Queue the final callback of each of the notifications that is in a FINAL state,
    asked for one and has not had it; return how many were queued.

    Call it wherever a notification may have become final. A claim whose call Kafka did
    not take is given up before the error is raised, so that a retry makes it (or, if the
    worker dies first, the sweep: its note stays).
    """
    notifications = NotificationsRepository(db)
    notes = CallbackNotes(db)
    queued = 0
    for notification_id in await notifications.unclaimed_callbacks(list(notification_ids)):
        await notes.open(notification_id)
        claimed = await notifications.claim_callback(notification_id)
        if claimed is None:
            await notes.close(notification_id)
            continue
        try:
            await queue(final_call(claimed))
        except BaseException:
            await notifications.release_callback(notification_id)
            raise
        await notes.close(notification_id)
        queued += 1
    return queued


async def sweep(db: AsyncDatabase[Document], queue: Queue) -> int:
    """Make the final callbacks whose worker died while making them (notes older than
    NOTE_GRACE): the claimed ones are queued, the others made as `fire_final` makes them.
    Returns how many were queued. Raises what the store or Kafka raises; the note of a
    call not queued stays for the next sweep."""
    notifications = NotificationsRepository(db)
    notes = CallbackNotes(db)
    queued = 0
    for notification_id in await notes.take_stale(utc_now() - NOTE_GRACE):
        claimed = await notifications.claimed_callback(notification_id)
        if claimed is not None:
            await queue(final_call(claimed))
            queued += 1
        else:
            queued += await fire_final(db, [notification_id], queue)
        await notes.close(notification_id)
    return queued


async def fire_devices(
    db: AsyncDatabase[Document], outcomes: Sequence[DeliveryOutcome], queue: Queue
) -> None:
    """Queue the device events of the outcomes whose notification's callback asked for
    them, in POSTs of at most EVENTS_PER_CALL events per notification."""
    ids = {o.notification_id for o in outcomes if o.notification_id is not None}
    if not ids:
        return
    callbacks = await NotificationsRepository(db).callbacks(ids)
    for notification_id, callback in callbacks.items():
        for call in device_calls(notification_id, callback, outcomes):
            await queue(call)
