"""Devices written straight into the store, as the registration path would leave them."""

from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase

from services.core.store.client import Document
from services.core.store.directory import Directory


async def store_devices(db: AsyncDatabase[Document], documents: list[Document]) -> None:
    """Insert device documents, entered first in the contact directory (as the start-up
    build enters devices stored without it), so contact lookups find them."""
    await Directory(db).add(documents)
    await db.devices.insert_many(documents)
