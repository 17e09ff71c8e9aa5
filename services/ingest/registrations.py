"""Accepting registrations, shared by every dialect: which provider would take a device, the
commands put durably on `push.registrations` (tracked ones recorded Pending first), and the
statuses callers read back."""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from fastapi import Request
from pymongo.asynchronous.database import AsyncDatabase

from services.core import topics
from services.core.devices import provider_for, token_problem
from services.core.errors import KafkaUnavailableError
from services.core.events import RegisterDevice, WebPushSubscription
from services.core.fields import Platform, ProviderName
from services.core.providers.base import TokenProblem
from services.core.publisher import Publisher
from services.core.settings import Settings
from services.core.store.apps import App
from services.core.store.client import Document
from services.core.store.devices import Delivery, DevicesRepository
from services.core.store.registrations import PENDING, RegistrationsRepository, Status
from services.core.tokens import hash_token
from services.ingest.commands import Command, command_key
from services.ingest.waiting import settled


class Registrations:
    """The ingest's side of registrations."""

    def __init__(
        self, db: AsyncDatabase[Document], producer: AIOKafkaProducer, settings: Settings
    ) -> None:
        self._tracked = RegistrationsRepository(db)
        self._devices = DevicesRepository(db)
        self._publisher = Publisher(producer, settings.publish_timeout_seconds)
        self._topic = settings.scoped(topics.REGISTRATIONS.name)
        self._allow_private = settings.webhook_allow_private

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
        timeout.
        """
        tracked = [c for c in commands if isinstance(c, RegisterDevice) and c.track]
        await self._tracked.record_pending(tracked)
        try:
            await self._publisher.publish(self._topic, [(command_key(c), c) for c in commands])
        except KafkaUnavailableError:
            # The caller is told nothing was accepted and never learns these ids.
            await self._tracked.forget_pending([c.request_id for c in tracked])
            raise

    async def status(self, account_id: str, registration_id: str) -> Status | None:
        """The status of one of the account's tracked registrations; None for an id never
        issued to the account."""
        return await self._tracked.status(account_id, registration_id)

    async def statuses(self, app: App, ids: Sequence[str]) -> list[Status]:
        """The status of each of the app's registration ids, in the order asked.

        An id without a document (never tracked, or another app's) is Pending: the
        answer tells nothing about other tenants.
        """
        return await self._tracked.statuses(app.account_id, app.id, ids)

    async def decided(self, app: App, ids: Sequence[str], seconds: float) -> list[Status]:
        """The status of each of the app's registration ids, once none is Pending or after
        `seconds`."""
        return await settled(
            lambda: self.statuses(app, ids),
            lambda found: all(s.status != PENDING.status for s in found),
            seconds,
        )


def registrations_of(request: Request) -> Registrations:
    """The Registrations the ingest's lifespan built."""
    found = request.app.state.registrations
    assert isinstance(found, Registrations)
    return found
