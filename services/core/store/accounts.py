"""The `accounts` collection: tenants. Their API keys are in `api_keys` (store/keys.py).

Document: `{_id, name, created}`.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.core.errors import AlreadyExistsError, InvalidRequestError
from services.core.store.client import Document, stored_now
from services.core.store.keys import ApiKeys

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


class Accounts:
    """Repository of accounts."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._collection = db["accounts"]
        self.keys = ApiKeys(db)

    async def create(self, name: str, account_id: str | None = None) -> tuple[Account, str]:
        """Create an account; return it and its first API key, a secret one (the only time
        it is shown).

        Raises AlreadyExistsError when `account_id` is taken, InvalidRequestError when it
        is not a valid id.
        """
        if account_id is not None and not _ID.fullmatch(account_id):
            raise InvalidRequestError(
                "an id is 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        account = Account(id=account_id or new_id(), name=name, created=stored_now())
        try:
            await self._collection.insert_one(
                {
                    "_id": account.id,
                    "name": account.name,
                    "created": account.created,
                }
            )
        except DuplicateKeyError as exc:
            raise AlreadyExistsError(f"account {account.id} already exists") from exc
        _, api_key = await self.keys.issue(account.id, name="first key")
        return account, api_key

    async def get(self, account_id: str) -> Account | None:
        """The account with this id, or None."""
        document = await self._collection.find_one({"_id": account_id})
        return None if document is None else _account(document)


def _account(document: Document) -> Account:
    return Account(id=document["_id"], name=document["name"], created=document["created"])
