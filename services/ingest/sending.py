"""Accepting send requests, shared by the native API and Masiv: refuse what no provider
would take, honour idempotency keys, record the notification, put it on Kafka.

Also what callers read back: a notification's state and counters, a contact's
reachability, and the interaction events apps report.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from aiokafka import AIOKafkaProducer
from fastapi import Request
from pymongo.asynchronous.database import AsyncDatabase

from services.core import topics
from services.core.callbacks import fire_final
from services.core.errors import IdempotencyConflictError, MessageInvalidError
from services.core.events import (
    Content,
    Interaction,
    InteractionType,
    Options,
    SendRequest,
    WebhookCall,
)
from services.core.fields import ProviderName
from services.core.providers.payload import check_notification
from services.core.publisher import Publisher
from services.core.settings import Settings
from services.core.store.client import Document
from services.core.store.deliveries import DeliveriesRepository
from services.core.store.devices import account_apps, with_tokens
from services.core.store.directory import devices_carrying
from services.core.store.idempotency import IdempotencyKeys, key_id
from services.core.store.notifications import NotificationsRepository, counters_of
from services.core.tokens import hash_token
from services.ingest.waiting import settled

# A repeated Idempotency-Key within this time returns the first request's id.
IDEMPOTENCY_WINDOW = timedelta(hours=24)
# How long an interaction event waits for the send it reports on to be recorded.
SENT_GRACE = 5.0


class Sends:
    """The ingest's side of sending."""

    def __init__(
        self, db: AsyncDatabase[Document], producer: AIOKafkaProducer, settings: Settings
    ) -> None:
        self._db = db
        self._notifications = NotificationsRepository(db)
        self._deliveries = DeliveriesRepository(db)
        self._keys = IdempotencyKeys(db)
        self._publisher = Publisher(producer, settings.publish_timeout_seconds)
        self._send_requests = settings.scoped(topics.SEND_REQUESTS.name)
        self._feedback = settings.scoped(topics.FEEDBACK.name)
        self._webhooks = settings.scoped(topics.WEBHOOKS.name)
        # Whether a send's callback may name a private address (the operator's choice).
        self.allow_private_callbacks = settings.webhook_allow_private

    @staticmethod
    def check(
        notification: Content,
        data: dict[str, str],
        options: Options,
        providers: Iterable[ProviderName],
    ) -> str | None:
        """Why no provider of `providers` would take this notification, or None."""
        try:
            check_notification(notification, data, options, providers)
        except MessageInvalidError as exc:
            return str(exc)
        return None

    async def accept(self, request: SendRequest, idempotency_key: str | None) -> str:
        """Record and publish the request; return its notification id.

        With an idempotency key seen in the last 24 hours for this account, nothing new is
        sent and the first request's id is returned. Raises IdempotencyConflictError when
        that first request had another body, KafkaUnavailableError when Kafka does not
        take the request.
        """
        claimed = None
        if idempotency_key is not None:
            claimed = key_id(request.account_id, idempotency_key)
            first = await self._remember(request, idempotency_key)
            if first is not None:
                return first
        await self._notifications.accept(request, claimed)
        await self._publisher.publish(
            self._send_requests, [(topics.notification_key(request.notification_id), request)]
        )
        return request.notification_id

    async def _remember(self, request: SendRequest, key: str) -> str | None:
        """Claim the key for this request; the id it already names, if claimed before by a
        request with the same body. Raises IdempotencyConflictError if by another body."""
        body = fingerprint(request)
        claim = await self._keys.claim(
            key_id(request.account_id, key),
            request.notification_id,
            body,
            window=IDEMPOTENCY_WINDOW,
        )
        if claim is None:
            return None
        # Keys claimed before fingerprints were kept have none: trust them.
        if claim.fingerprint not in (None, body):
            raise IdempotencyConflictError(
                f"Idempotency-Key {key!r} was already used for another request "
                f"(notification {claim.notification_id}); a new request needs a new key",
                notification_id=claim.notification_id,
            )
        return claim.notification_id

    async def unregistered(self, account_id: str, tokens: list[str]) -> list[str]:
        """The tokens no device of the account has registered (read by `_id` under each of
        the account's apps)."""
        if not tokens:
            return []
        by_hash = {hash_token(token): token for token in tokens}
        known = {
            device["token_hash"]
            async for device in with_tokens(
                self._db, await account_apps(self._db, account_id), by_hash, {"token_hash": 1}
            )
        }
        return [token for digest, token in by_hash.items() if digest not in known]

    async def notification(self, account_id: str, notification_id: str) -> Document | None:
        """The account's notification, or None (also when another account owns it)."""
        found = await self._notifications.get(notification_id)
        if found is None or found.get("account_id") != account_id:
            return None
        return found

    async def cancel(self, account_id: str, notification_id: str) -> Document | None:
        """Cancel the account's notification unless it has ended; the notification as it
        stands then, or None (also when another account owns it). A send that asked for a
        callback gets it now, with the counters as they stand (once, however often it is
        cancelled). Raises KafkaUnavailableError when Kafka does not take the callback (the
        cancel stands; cancelling again makes the call)."""
        found = await self._notifications.cancel(notification_id, account_id)
        if found is not None:
            await fire_final(self._db, [notification_id], self._queue_call)
        return found

    async def _queue_call(self, call: WebhookCall) -> None:
        await self._publisher.publish(self._webhooks, [(call.webhook_id.encode(), call)])

    async def reached(self, notification: Document, token: str) -> bool:
        """Whether the notification was sent to this device: its provider took it.

        The provider's answer reaches the store through the feedback stage, perhaps after
        the device has shown the notification and the app reported on it: until the
        notification is done, the answer is waited for up to SENT_GRACE seconds.
        """
        notification_id = notification["_id"]
        token_hash = hash_token(token)

        async def read() -> tuple[bool, bool]:
            if await self._deliveries.succeeded(notification_id, token_hash):
                return True, True
            # Read after the delivery: a notification is done only once every send is recorded.
            current = await self._notifications.get(notification_id)
            return False, current is None or current["state"] == "done"

        sent, _ = await settled(read, lambda seen: seen[1], SENT_GRACE)
        return sent

    async def report(
        self, notification: Document, token: str, interaction: InteractionType
    ) -> None:
        """Pass an app's interaction event to feedback, which counts it once; only for a
        device the notification was sent to (see `reached`)."""
        event = Interaction(
            notification_id=notification["_id"],
            # A Masiv request across all apps names none: key by the account instead.
            app_id=notification.get("app_id") or notification["account_id"],
            token_hash=hash_token(token),
            interaction=interaction,
        )
        await self._publisher.publish(
            self._feedback, [(topics.device_key(event.app_id, event.token_hash), event)]
        )

    async def reachability(
        self, account_id: str, app_id: str, contact_id: str
    ) -> dict[str, dict[str, object]]:
        """Per platform: the contact's active and invalid devices, the last notification
        one of them took, and the latest invalidation (when and why), so a caller can fall
        back to another channel. The devices come from the contact directory, by `_id`."""
        found: dict[str, _Reach] = {}
        cursor = devices_carrying(
            self._db,
            "contact_id",
            [contact_id],
            account_id=account_id,
            app_ids=[app_id],
            projection={
                "platform": 1,
                "status": 1,
                "invalid_reason": 1,
                "invalid_at": 1,
                "last_success_at": 1,
            },
        )
        async for device in cursor:
            reach = found.setdefault(device["platform"], _Reach())
            success = device.get("last_success_at")
            if success is not None and (
                reach.last_success_at is None or success > reach.last_success_at
            ):
                reach.last_success_at = success
            if device.get("status") == "active":
                reach.active += 1
                continue
            reach.invalid += 1
            when = device.get("invalid_at")
            if when is not None and (reach.last_invalid_at is None or when > reach.last_invalid_at):
                reach.last_invalid_at = when
                reach.last_invalid_reason = device.get("invalid_reason")
        return {platform: reach.shown() for platform, reach in found.items()}


def fingerprint(request: SendRequest) -> str:
    """SHA-256 of what the caller asked for: the request without the id and time the
    ingest gave it (nor the callback's signature), keys sorted, so the same body however
    spaced or ordered matches."""
    asked = request.model_dump(mode="json", exclude={"notification_id", "accepted_at"})
    callback = asked.pop("callback")
    if callback is not None:
        # Without the signature: the same request made with another of the account's keys
        # is the same request. Without a callback the fingerprint is what it was before
        # callbacks existed, so a key claimed then still matches.
        callback.pop("signature")
        asked["callback"] = callback
    return hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()


@dataclass
class _Reach:
    active: int = 0
    invalid: int = 0
    last_success_at: datetime | None = None
    last_invalid_at: datetime | None = None
    last_invalid_reason: str | None = None

    def shown(self) -> dict[str, object]:
        shown: dict[str, object] = asdict(self)
        for name in ("last_success_at", "last_invalid_at"):
            at = getattr(self, name)
            shown[name] = at.isoformat() if at else None
        return shown


def shown(notification: Document) -> dict[str, object]:
    """A notification as the native API answers it."""
    return {
        "id": notification["_id"],
        "app_id": notification.get("app_id"),
        "state": notification["state"],
        "counters": counters_of(notification),
        "platforms": notification.get("by_platform") or {},
        # Jobs per provider, once resolved: what a dry run answers.
        "providers": notification.get("by_provider") or {},
        # What it carries and who it is for, in counts (None: accepted by an older version).
        "content": notification.get("content"),
        "audience": notification.get("audience"),
        # When a scheduled send starts (None: at once).
        "send_at": send_at.isoformat() if (send_at := notification.get("send_at")) else None,
        "created": notification["created"].isoformat(),
        "updated": notification["updated"].isoformat(),
    }


def sends_of(request: Request) -> Sends:
    """The Sends the ingest's lifespan built."""
    found = request.app.state.sends
    assert isinstance(found, Sends)
    return found
