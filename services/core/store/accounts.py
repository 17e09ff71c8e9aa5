"""The `accounts` collection: tenants and their API keys.

Document: `{_id, name, api_key_hashes: [sha256 hex of each key], created}`. A key is shown
once, when issued; only its hash is kept, so a copy of the store gives no usable key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.core.errors import AlreadyExistsError, InvalidRequestError, NotFoundError
from services.core.store.client import Document, stored_now

_KEY_PREFIX = "pl_"
# Ids also appear in URL paths and Kafka keys: keep them to URL-safe characters.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_ID = re.compile(ID_PATTERN)

RecordId = Annotated[str, Field(pattern=ID_PATTERN)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class Account(BaseModel):
    """A tenant: owns apps; authenticates with API keys."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    created: datetime


def new_id() -> str:
    """A generated account or app id."""
    return str(uuid.uuid4())


def hash_api_key(api_key: str) -> str:
    """The SHA-256 hex digest under which an API key is stored and looked up."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


class Accounts:
    """Repository of accounts."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._collection = db["accounts"]

    async def create(self, name: str, account_id: str | None = None) -> tuple[Account, str]:
        """Create an account; return it and its first API key (the only time it is shown).

        Raises AlreadyExistsError when `account_id` is taken, InvalidRequestError when it
        is not a valid id.
        """
        if account_id is not None and not _ID.fullmatch(account_id):
            raise InvalidRequestError(
                "an id is 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        api_key = _new_api_key()
        account = Account(id=account_id or new_id(), name=name, created=stored_now())
        try:
            await self._collection.insert_one(
                {
                    "_id": account.id,
                    "name": account.name,
                    "api_key_hashes": [hash_api_key(api_key)],
                    "created": account.created,
                }
            )
        except DuplicateKeyError as exc:
            raise AlreadyExistsError(f"account {account.id} already exists") from exc
        return account, api_key

    async def issue_key(self, account_id: str) -> str:
        """Add a new API key to the account and return it (shown once).

        Raises NotFoundError when the account does not exist.
        """
        api_key = _new_api_key()
        result = await self._collection.update_one(
            {"_id": account_id}, {"$push": {"api_key_hashes": hash_api_key(api_key)}}
        )
        if result.matched_count == 0:
            raise NotFoundError(f"account {account_id} not found")
        return api_key

    async def get(self, account_id: str) -> Account | None:
        """The account with this id, or None."""
        document = await self._collection.find_one({"_id": account_id})
        return None if document is None else _account(document)

    async def authenticate(self, api_key: str) -> Account | None:
        """The account that owns `api_key`, or None for an unknown key."""
        digest = hash_api_key(api_key)
        document = await self._collection.find_one({"api_key_hashes": digest})
        if document is None:
            return None
        # The lookup matched on the hash; confirm without a data-dependent early exit.
        if not any(hmac.compare_digest(digest, known) for known in document["api_key_hashes"]):
            return None
        return _account(document)


def _new_api_key() -> str:
    return _KEY_PREFIX + secrets.token_urlsafe(32)


def _account(document: Document) -> Account:
    return Account(id=document["_id"], name=document["name"], created=document["created"])
