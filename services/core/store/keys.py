"""The `api_keys` collection: the keys an account's callers authenticate with.

Document: `{_id, account_id, name, kind, apps, hash, created_at, last_used_at,
revoked_at}`. `hash` is the SHA-256 hex digest of the key: a key is 32 random bytes, so a
fast hash is as safe as a slow one, and a copy of the store gives no usable key. The key
itself is shown once, when issued.

A *secret* key may do everything its account may; a *publishable* key, made to ship
inside an app, only registers devices, cleans them up and reports interaction events, and
only for the apps it names. `revoked_at` may lie ahead: a rotated key keeps working for the
grace period its caller gave, then is refused like any revoked key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pymongo.asynchronous.database import AsyncDatabase

from services.core.errors import AlreadyExistsError, InvalidRequestError, NotFoundError
from services.core.store.client import Document, insert_new, stored_now

KeyKind = Literal["secret", "publishable"]
_PREFIXES: dict[KeyKind, str] = {"secret": "pl_sk_", "publishable": "pl_pk_"}
# `last_used_at` is written at most this often per key: a busy key costs no write per
# request.
TOUCH_SECONDS = 60
# The longest grace period a rotation may give the key it replaces.
MAX_GRACE_SECONDS = 30 * 24 * 3600
# Apps a publishable key may name.
MAX_APPS = 100

KeyName = Annotated[str, Field(min_length=1, max_length=200)]


class ApiKey(BaseModel):
    """An API key as stored and shown: never the key itself, nor its hash."""

    model_config = ConfigDict(frozen=True)

    id: str
    account_id: str
    name: str
    kind: KeyKind
    # The apps a publishable key may act for; empty for a secret key (every app).
    apps: tuple[str, ...] = ()
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    def revoked(self, now: datetime) -> bool:
        """Whether the key is refused at `now`."""
        return self.revoked_at is not None and self.revoked_at <= now

    def permits(self, app_id: str | None) -> bool:
        """Whether the key may act for the app with this id (None: no one app)."""
        return self.kind == "secret" or (app_id is not None and app_id in self.apps)


def key_view(key: ApiKey, api_key: str | None = None) -> dict[str, object]:
    """A key as the admin API and CLI show it; `api_key`, the key itself, only when issued."""
    shown = key.model_dump(mode="json")
    if api_key is not None:
        shown["api_key"] = api_key
    return shown


def hash_api_key(api_key: str) -> str:
    """The SHA-256 hex digest under which an API key is stored and looked up."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


class ApiKeys:
    """Repository of API keys."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._db = db
        self._collection = db["api_keys"]

    async def issue(
        self,
        account_id: str,
        *,
        kind: KeyKind = "secret",
        name: str | None = None,
        apps: list[str] | tuple[str, ...] = (),
    ) -> tuple[ApiKey, str]:
        """A new key of the account, and the key itself (the only time it is shown).

        Raises NotFoundError when the account does not exist, InvalidRequestError when a
        publishable key names no app or an app not of the account, or a secret key names
        any (it may act for every app).
        """
        if await self._db.accounts.find_one({"_id": account_id}, {"_id": 1}) is None:
            raise NotFoundError(f"account {account_id} not found")
        named = sorted(set(apps))
        if kind == "secret" and named:
            raise InvalidRequestError("a secret key acts for every app: give no apps")
        if kind == "publishable":
            if not named:
                raise InvalidRequestError("a publishable key must name the apps it acts for")
            if len(named) > MAX_APPS:
                raise InvalidRequestError(f"a key names at most {MAX_APPS} apps")
            found = self._db.apps.find({"_id": {"$in": named}, "account_id": account_id})
            owned = {document["_id"] async for document in found}
            if missing := [app for app in named if app not in owned]:
                raise InvalidRequestError(f"no such app in account {account_id}: {missing}")
        api_key = _PREFIXES[kind] + secrets.token_urlsafe(32)
        key = ApiKey(
            id="key_" + secrets.token_hex(8),
            account_id=account_id,
            name=name or f"{kind} key",
            kind=kind,
            apps=tuple(named),
            created_at=stored_now(),
        )
        await self._collection.insert_one({**_document(key), "hash": hash_api_key(api_key)})
        return key, api_key

    async def of_account(self, account_id: str) -> list[ApiKey]:
        """The account's keys, revoked ones too, oldest first."""
        found = self._collection.find({"account_id": account_id}).sort("created_at", 1)
        return [_key(document) async for document in found]

    async def get(self, account_id: str, key_id: str) -> ApiKey:
        """The account's key with this id. Raises NotFoundError for none."""
        document = await self._collection.find_one({"_id": key_id, "account_id": account_id})
        if document is None:
            raise NotFoundError(f"API key {key_id} not found in account {account_id}")
        return _key(document)

    async def revoke(self, account_id: str, key_id: str, *, after_seconds: float = 0) -> ApiKey:
        """Revoke the key now, or `after_seconds` from now; a key already revoked earlier
        stays revoked from then. Raises NotFoundError for no such key."""
        key = await self.get(account_id, key_id)
        at = stored_now() + timedelta(seconds=after_seconds)
        if key.revoked_at is not None and key.revoked_at <= at:
            return key
        await self._collection.update_one({"_id": key_id}, {"$set": {"revoked_at": at}})
        return key.model_copy(update={"revoked_at": at})

    async def rotate(
        self, account_id: str, key_id: str, *, grace_seconds: float = 0
    ) -> tuple[ApiKey, str, ApiKey]:
        """A new key of the same kind, name and apps, the key itself, and the old key,
        revoked now or once `grace_seconds` have passed. Raises NotFoundError for no such
        key, AlreadyExistsError when it is revoked already (its successor exists)."""
        old = await self.get(account_id, key_id)
        if old.revoked_at is not None:
            raise AlreadyExistsError(f"API key {key_id} is revoked already")
        new, api_key = await self.issue(account_id, kind=old.kind, name=old.name, apps=old.apps)
        return new, api_key, await self.revoke(account_id, key_id, after_seconds=grace_seconds)

    async def authenticate(self, api_key: str) -> ApiKey | None:
        """The key with this value, unless unknown or revoked."""
        digest = hash_api_key(api_key)
        document = await self._collection.find_one({"hash": digest})
        # The lookup matched on the hash; confirm without a data-dependent early exit.
        if document is None or not hmac.compare_digest(digest, document["hash"]):
            return None
        key = _key(document)
        return None if key.revoked(stored_now()) else key

    async def touch(self, key: ApiKey) -> None:
        """Note that the key was used now, unless that was noted in the last minute (by
        any process)."""
        now = stored_now()
        await self._collection.update_one(
            {
                "_id": key.id,
                "$or": [
                    {"last_used_at": None},
                    {"last_used_at": {"$lt": now - timedelta(seconds=TOUCH_SECONDS)}},
                ],
            },
            {"$set": {"last_used_at": now}},
        )


async def migrate_account_keys(db: AsyncDatabase[Document]) -> int:
    """Move the key hashes stored in accounts (`api_key_hashes`, before keys had ids and
    kinds) to `api_keys` as secret keys, which is what they could do; return how many.

    Safe to run at once in several processes: a key's id is derived from its hash, so a
    copy another process made is kept, and the hashes leave the account only once copied.
    """
    moved = 0
    async for account in db.accounts.find({"api_key_hashes": {"$exists": True}}):
        hashes: list[str] = account["api_key_hashes"]
        await insert_new(
            db.api_keys,
            [
                {
                    "_id": f"key_{digest[:16]}",
                    "account_id": account["_id"],
                    "name": f"key {number}",
                    "kind": "secret",
                    "apps": [],
                    "hash": digest,
                    "created_at": account["created"],
                    "last_used_at": None,
                    "revoked_at": None,
                }
                for number, digest in enumerate(hashes, start=1)
            ],
        )
        await db.accounts.update_one({"_id": account["_id"]}, {"$unset": {"api_key_hashes": ""}})
        moved += len(hashes)
    return moved


def _document(key: ApiKey) -> Document:
    document = key.model_dump()
    document["_id"] = document.pop("id")
    document["apps"] = list(key.apps)
    return document


def _key(document: Document) -> ApiKey:
    return ApiKey(
        id=document["_id"],
        account_id=document["account_id"],
        name=document["name"],
        kind=document["kind"],
        apps=tuple(document.get("apps") or ()),
        created_at=document["created_at"],
        last_used_at=document.get("last_used_at"),
        revoked_at=document.get("revoked_at"),
    )
