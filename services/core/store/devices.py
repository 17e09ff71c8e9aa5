"""The `devices` collection: one document per (app, token hash).

Only the feedback stream writes here; the resolver reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.core.events import (
    CleanupDevices,
    Platform,
    Provider,
    RegisterDevice,
    WebPushSubscription,
    utc_now,
)
from services.core.store.client import Document
from services.core.tokens import hash_token


@dataclass(frozen=True)
class Delivery:
    """How a stored device is reached. A registration of a token the app already has keeps
    it, whichever dialect the device came in through: only the first registration's
    platform (or the guess from the token's shape) decides it."""

    platform: Platform
    provider: Provider
    subscription: WebPushSubscription | None

    @classmethod
    def of(cls, device: Document) -> Delivery:
        """The delivery of a device document."""
        subscription = device.get("subscription")
        return cls(
            platform=device["platform"],
            provider=device["provider"],
            subscription=WebPushSubscription.model_validate(subscription) if subscription else None,
        )


class DevicesRepository:
    """Reads and writes of device documents."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._devices = db.devices

    async def find(self, app_id: str, token_hash: str) -> Document | None:
        """The device with this token under this app, active or not."""
        return await self._devices.find_one({"app_id": app_id, "token_hash": token_hash})

    async def register(self, command: RegisterDevice, provider: Provider, token_hash: str) -> None:
        """Create the device, or refresh it and make it active again.

        A device the app already has keeps its platform, provider and subscription (its
        `Delivery`), and of the contact id, cellphone and email takes only those the command
        gives: an association adds to what another dialect registered.

        Raises pymongo.errors.PyMongoError when the store refuses the write.
        """
        now = utc_now()
        contact = {
            "contact_id": command.contact_id,
            "cellphone": command.cellphone,
            "email": command.email,
        }
        given = {field: value for field, value in contact.items() if value is not None}
        update: dict[str, Any] = {
            "$set": {
                "account_id": command.account_id,
                **given,
                "status": "active",
                "invalid_reason": None,
                "invalid_at": None,
                "registered_at": command.received_at,
                "updated": now,
            },
            # Decided in the same write that creates the device, so a registration that
            # raced ahead of the resolver's read cannot change how the device is reached.
            "$setOnInsert": {
                "platform": command.platform,
                "provider": provider,
                "token": command.token,
                "subscription": (
                    command.subscription.model_dump() if command.subscription else None
                ),
                **{field: None for field in contact.keys() - given.keys()},
                "created": now,
            },
        }
        query = {"app_id": command.app_id, "token_hash": token_hash}
        try:
            await self._devices.update_one(query, update, upsert=True)
        except DuplicateKeyError:
            # Two upserts of a new device raced; the loser now finds the winner's document.
            await self._devices.update_one(query, update)

    async def invalidate(self, app_id: str, token_hash: str, reason: str, since: datetime) -> bool:
        """Mark an active device invalid, unless it was registered after `since` (the
        provider's answer and a re-registration race through Kafka: the newer one wins).
        Returns whether the device changed."""
        result = await self._devices.update_one(
            {
                "app_id": app_id,
                "token_hash": token_hash,
                "status": "active",
                "registered_at": {"$lt": since},
            },
            {
                "$set": {
                    "status": "invalid",
                    "invalid_reason": reason,
                    "invalid_at": since,
                    "updated": utc_now(),
                }
            },
        )
        return result.modified_count == 1

    async def mark_reached(self, reached: list[tuple[str, str, datetime]]) -> None:
        """Record when each (app, token hash) last took a notification: one bulk write."""
        if reached:
            await self._devices.bulk_write(
                [
                    UpdateOne(
                        {"app_id": app_id, "token_hash": token_hash},
                        {"$set": {"last_success_at": at}},
                    )
                    for app_id, token_hash, at in reached
                ],
                ordered=False,
            )

    async def clean_up(self, command: CleanupDevices) -> int:
        """Delete the devices the cleanup names; return how many were deleted."""
        query: Document = {"app_id": command.app_id, "account_id": command.account_id}
        if command.contact_id is not None:
            query["contact_id"] = command.contact_id
        if command.token is not None:
            query["token_hash"] = hash_token(command.token)
        if len(query) == 2:
            # Neither a contact nor a token: refuse to wipe the whole app.
            return 0
        result = await self._devices.delete_many(query)
        return result.deleted_count
