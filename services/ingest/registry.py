"""What every dialect does the same way: authenticate an API key, find the caller's app,
build the registration commands and put them durably on `push.registrations`.

Tenant isolation lives here: an app is only ever found through the caller's account, so an
app of another account looks exactly like one that does not exist.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import Request
from pymongo.asynchronous.database import AsyncDatabase

from services.core import audit, topics
from services.core.devices import TokenProblem, provider_for, token_problem
from services.core.errors import KafkaUnavailableError
from services.core.events import (
    Callback,
    CleanupDevices,
    Platform,
    ProviderName,
    RegisterDevice,
    WebPushSubscription,
)
from services.core.kafka import encode
from services.core.store.accounts import Account, Accounts, hash_api_key
from services.core.store.apps import App, Apps
from services.core.store.client import Document
from services.core.store.devices import Delivery, DevicesRepository
from services.core.store.registrations import RegistrationsRepository
from services.core.tokens import hash_token
from services.ingest import access
from services.ingest.cache import TTLCache
from services.ingest.waiting import settled

Command = RegisterDevice | CleanupDevices


@dataclass(frozen=True)
class Status:
    """A registration's state as the `registrations` collection (written by feedback) has it."""

    status: str
    failure_reason: str | None = None


PENDING = Status("Pending")

# Accounts and apps the lookup cache holds at most, each.
_CACHED = 10_000


class Registry:
    """The ingest's view of accounts, apps, registrations, and its Kafka producer."""

    def __init__(
        self,
        db: AsyncDatabase[Document],
        apps: Apps,
        producer: AIOKafkaProducer,
        registrations_topic: str,
        *,
        publish_timeout: float,
        allow_private: bool,
        cache_seconds: float,
    ) -> None:
        """`cache_seconds`: how long a found account or app is used without asking the
        store again (0: ask every time)."""
        self.accounts = Accounts(db)
        self.apps = apps
        # Keyed by the key's digest, never the key itself. An app is keyed by the account
        # that found it as well as its id, so it is only ever returned to that account.
        self._known_keys: TTLCache[str, Account] = TTLCache(cache_seconds, _CACHED)
        self._known_apps: TTLCache[tuple[str, str], App] = TTLCache(cache_seconds, _CACHED)
        self._registrations = db["registrations"]
        self._tracked = RegistrationsRepository(db)
        self._devices = DevicesRepository(db)
        self._producer = producer
        self._topic = registrations_topic
        self._publish_timeout = publish_timeout
        self._allow_private = allow_private

    async def account(self, api_key: str | None) -> Account | None:
        """The account of an API key; None when the key is absent or unknown. A key removed
        from its account is refused within the cache's seconds."""
        if not api_key:
            return None
        digest = hash_api_key(api_key)
        account = self._known_keys.get(digest)
        if account is None:
            account = await self.accounts.authenticate(api_key)
            if account is not None:
                self._known_keys.put(digest, account)
        return account

    async def app(self, account: Account, app_id: str) -> App | None:
        """The account's app with this id; None also when another account owns it. A
        changed or deleted app is seen as such within the cache's seconds."""
        key = (account.id, app_id)
        app = self._known_apps.get(key)
        if app is None:
            app = await self.apps.find(account.id, app_id)
            if app is not None:
                self._known_apps.put(key, app)
        return app

    async def provider(
        self, app: App, platform: Platform, token: str, subscription: WebPushSubscription | None
    ) -> ProviderName | TokenProblem | None:
        """The provider this device would be sent through; a TokenProblem when its token
        fails the checks the resolver would make (`token_problem`), None when the app has no
        provider for it. A token the app already has is judged by its stored provider and
        subscription when the guess does not fit."""
        address = subscription.endpoint if subscription is not None else token
        # Sandbox apps deliver to the local emulators, as the sender does for them.
        allow_http = self._allow_private or app.sandbox
        chosen = provider_for(
            platform, token, web_subscription=subscription is not None, configured=app.configured
        )
        problem = None
        if chosen is not None:
            problem = token_problem(chosen, address, subscription, allow_http=allow_http)
            if problem is None:
                return chosen
        # The guess from the platform and the token's shape does not fit; a token the app
        # already has keeps how it is reached (the resolver's rule), so it may still pass.
        # Only here is the store asked: most registrations fit their guess.
        existing = await self._devices.find(app.id, hash_token(address))
        if existing is None:
            return problem
        kept = Delivery.of(existing)
        if kept.provider not in app.configured:
            return None
        return (
            token_problem(kept.provider, address, kept.subscription, allow_http=allow_http)
            or kept.provider
        )

    async def publish(self, commands: Sequence[Command]) -> None:
        """Put the commands on `push.registrations` and return once Kafka has them all.

        Raises KafkaUnavailableError when the broker does not take them within the publish
        timeout (a request waiting on a stuck broker would hold its memory and connection).
        """
        tracked = [c for c in commands if isinstance(c, RegisterDevice) and c.track]
        await self._tracked.record_pending(tracked)
        try:
            await asyncio.wait_for(self._send(commands), self._publish_timeout)
        except (KafkaError, TimeoutError) as exc:
            # The caller is told nothing was accepted and never learns these ids.
            await self._tracked.forget_pending([c.request_id for c in tracked])
            raise KafkaUnavailableError("Kafka did not take the registration commands") from exc

    async def _send(self, commands: Sequence[Command]) -> None:
        pending = [
            await self._producer.send(self._topic, key=command_key(command), value=encode(command))
            for command in commands
        ]
        await asyncio.gather(*pending)

    async def status(self, account: Account, registration_id: str) -> Status | None:
        """The status of one of the account's tracked registrations; None for an id never
        issued to the account."""
        document = await self._registrations.find_one(
            {"_id": registration_id, "account_id": account.id},
            {"status": 1, "failure_reason": 1},
        )
        return None if document is None else _status(document)

    async def statuses(self, account: Account, app: App, ids: Sequence[str]) -> list[Status]:
        """The status of each registration id, in the order asked.

        An id without a document (never tracked, or another app's) is Pending: the
        answer tells nothing about other tenants.
        """
        return await self._statuses(account.id, app.id, ids)

    async def decided(self, app: App, ids: Sequence[str], seconds: float) -> list[Status]:
        """The status of each of the app's registration ids, once none is Pending or after
        `seconds`."""
        return await settled(
            lambda: self._statuses(app.account_id, app.id, ids),
            lambda found: all(s.status != PENDING.status for s in found),
            seconds,
        )

    async def _statuses(self, account_id: str, app_id: str, ids: Sequence[str]) -> list[Status]:
        cursor = self._registrations.find(
            {"_id": {"$in": list(ids)}, "app_id": app_id, "account_id": account_id},
            {"status": 1, "failure_reason": 1},
        )
        found = {d["_id"]: _status(d) for d in await cursor.to_list(None)}
        return [found.get(i, PENDING) for i in ids]


def _status(document: Document) -> Status:
    return Status(document.get("status", PENDING.status), document.get("failure_reason"))


def bearer(request: Request) -> str | None:
    """The credential of an `Authorization: Bearer ...` header, or None."""
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    return credential.strip()


async def caller(
    request: Request, api_key: str | None, *, org_id: str | None = None
) -> Account | None:
    """The account an API key authenticates as (given `org_id`, only that account), or None.

    The account's id goes to the request's access line; a key given but refused goes to the
    audit log (a missing key is in the access log only).
    """
    account = await registry_of(request).account(api_key)
    if account is not None and org_id is not None and account.id != org_id:
        account = None
    if account is not None:
        access.identify(request, account.id)
    elif api_key:
        audit.record("api_key_refused", via="api", org_id=org_id, **access.origin(request))
    return account


def new_request_id() -> str:
    """A registration request id (a GUID, as seed 001 shows them)."""
    return str(uuid.uuid4())


def subscription_in(token: str) -> WebPushSubscription | None:
    """The W3C push subscription a string token holds as JSON, if it holds one.

    Dialects that carry only a string token (Routee, Masiv) may pass a browser's
    `JSON.stringify(subscription)` there; anything else is an FCM token.
    """
    if not token.lstrip().startswith("{"):
        return None
    try:
        return WebPushSubscription.model_validate_json(token)
    except ValueError:
        return None


def registry_of(request: Request) -> Registry:
    """The Registry the ingest's lifespan built."""
    found = request.app.state.registry
    assert isinstance(found, Registry)
    return found


def register(
    app: App,
    *,
    source: str,
    platform: Platform,
    token: str,
    subscription: WebPushSubscription | None = None,
    contact_id: str | None = None,
    cellphone: str | None = None,
    email: str | None = None,
    track: bool = False,
    callback: Callback | None = None,
    request_id: str | None = None,
) -> RegisterDevice:
    """A RegisterDevice command for the app; for a Web Push subscription the token is its
    endpoint."""
    return RegisterDevice.model_validate(
        {
            "request_id": request_id or new_request_id(),
            "account_id": app.account_id,
            "app_id": app.id,
            "platform": platform,
            "token": subscription.endpoint if subscription is not None else token,
            "subscription": subscription,
            "contact_id": contact_id,
            "cellphone": cellphone,
            "email": email,
            "verify": app.settings.verify_on_register,
            "track": track,
            "callback": callback,
            "source": source,
        }
    )


def cleanup(
    app: App, *, contact_id: str | None, token: str | None, request_id: str | None = None
) -> CleanupDevices:
    """A CleanupDevices command for the app: one token, or every device of the contact."""
    return CleanupDevices(
        request_id=request_id or new_request_id(),
        account_id=app.account_id,
        app_id=app.id,
        contact_id=contact_id,
        token=token,
    )


def command_key(command: Command) -> bytes:
    """The partition key: the device's `{app_id}:{token_hash}`.

    A contact-wide cleanup names no token; it is keyed by the hash of the contact id, so all
    cleanups of one contact stay in order.
    """
    subject = command.token or f"contact:{command.contact_id}"
    return topics.device_key(command.app_id, hash_token(subject))


def signature(api_token: str, url: str) -> str:
    """Seed 001's webhook Signature: base64 HMAC-SHA256 of the URL keyed by the API token."""
    digest = hmac.new(api_token.encode(), url.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")
