"""The MongoDB client: one `AsyncMongoClient` per process and event loop."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, PyMongoError

from services.core.errors import StoreUnavailableError
from services.core.events import utc_now
from services.core.settings import Settings

Document = dict[str, Any]

_DEFAULT_DATABASE = "pushline"
_DUPLICATE_KEY = 11000
# The password of a URI's `user:password@`; '/' and '@' inside it must be percent-encoded.
_PASSWORD = re.compile(r"//([^/@:]*):[^/@]*@")


def connect(settings: Settings) -> AsyncMongoClient[Document]:
    """A client for `PUSHLINE_MONGODB_URI`; connects lazily, bound to the running loop."""
    return AsyncMongoClient(
        settings.mongodb_uri,
        serverSelectionTimeoutMS=5_000,
        tz_aware=True,
        appname="pushline",
    )


def unanswered(settings: Settings) -> str:
    """The message for a store that does not answer: where it was sought, without the URI's
    password or options (which may name more secrets)."""
    shown = _PASSWORD.sub(r"//\1:***@", settings.mongodb_uri.partition("?")[0])
    return f"the store at PUSHLINE_MONGODB_URI ({shown}) does not answer"


def database(client: AsyncMongoClient[Document]) -> AsyncDatabase[Document]:
    """The database named in the URI, or `pushline` when it names none."""
    return client.get_default_database(default=_DEFAULT_DATABASE)


async def ping(db: AsyncDatabase[Document]) -> None:
    """Raise StoreUnavailableError unless the store answers a ping."""
    try:
        await db.command("ping")
    except PyMongoError as exc:
        raise StoreUnavailableError("the store did not answer a ping") from exc


async def insert_new(
    collection: AsyncCollection[Document], documents: list[Document]
) -> list[bool]:
    """Insert the documents; return, per document, whether it is new (its `_id` unseen).

    One unordered bulk write: a document whose `_id` exists is skipped, not an error.
    """
    fresh = [True] * len(documents)
    if not documents:
        return fresh
    try:
        await collection.insert_many(documents, ordered=False)
    except BulkWriteError as exc:
        for error in exc.details.get("writeErrors", []):
            if error.get("code") != _DUPLICATE_KEY:
                raise
            fresh[error["index"]] = False
    return fresh


def stored_now() -> datetime:
    """The current UTC time at the millisecond precision BSON keeps, so that what a write
    returns equals what a later read gives."""
    now = utc_now()
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
