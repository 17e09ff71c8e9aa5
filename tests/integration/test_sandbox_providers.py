"""A sandbox app's providers, as the sender builds them from the sandbox settings:
its Web Push subscriptions reach the Web Push emulator and no other private address."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from pymongo.asynchronous.database import AsyncDatabase

from services.core.errors import ProviderAuthError
from services.core.events import PushJob, WebPushSubscription
from services.core.providers.webpush import WebPushSettings
from services.core.secrets import Vault
from services.core.settings import Settings
from services.core.store.apps import Apps
from services.core.store.client import Document
from services.sender.governor import Governor
from services.sender.providers import AppProviders
from tests.integration.pipeline import ACCOUNT, APP, Emulators, sandbox_app

pytestmark = pytest.mark.integration


@dataclass
class Internal:
    """An internal HTTP service on loopback, and the paths it was asked for."""

    port: int = 0
    hits: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        return web.Response(status=201)


@pytest.fixture
async def internal() -> AsyncIterator[Internal]:
    service = Internal()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", service.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    service.port = runner.addresses[0][1]
    yield service
    await runner.cleanup()


def webpush_job(subscription: WebPushSubscription) -> PushJob:
    return PushJob(
        notification_id="n1",
        account_id=ACCOUNT,
        app_id=APP,
        provider="webpush",
        platform="web",
        token=subscription.endpoint,
        token_hash="h",
        subscription=subscription,
    )


@pytest.mark.parametrize("allow_private", [False, True])
async def test_a_sandbox_app_reaches_the_web_push_emulator_and_no_other_private_address(
    settings: Settings,
    db: AsyncDatabase[Document],
    emulators: Emulators,
    internal: Internal,
    allow_private: bool,
) -> None:
    await sandbox_app(db)
    sender_settings = settings.model_copy(
        update={
            "sandbox": emulators.sandbox,
            "provider_settings": {"webpush": WebPushSettings(allow_private=allow_private)},
        }
    )
    providers = AppProviders(sender_settings, Apps(db, Vault(None)), Governor(db, {}))
    try:
        provider = await providers.get(APP, "webpush")
        emulated = WebPushSubscription.model_validate(emulators.webpush.subscribe())
        inside = emulated.model_copy(
            update={"endpoint": f"http://127.0.0.1:{internal.port}/admin/purge"}
        )
        # Another emulator is not a push service either.
        fcm = emulated.model_copy(update={"endpoint": f"{emulators.fcm.url}/_emulator/reset"})
        delivered, *others = await provider.send(
            [webpush_job(emulated), webpush_job(inside), webpush_job(fcm)]
        )
    finally:
        await providers.aclose()
    assert (delivered.outcome, delivered.status) == ("success", 201)
    assert [record.target for record in emulators.webpush.controls.records()] == [emulated.endpoint]
    if allow_private:
        # The operator's PUSHLINE_WEBHOOK_ALLOW_PRIVATE still opens every private target.
        assert others[0].outcome == "success"
        assert internal.hits == ["/admin/purge"]
    else:
        assert [(other.outcome, other.reason) for other in others] == [
            ("invalid_token", "EndpointNotAllowed"),
            ("invalid_token", "EndpointNotAllowed"),
        ]
        assert internal.hits == []


async def test_a_sandbox_app_fails_as_no_emulators_while_none_are_configured(
    settings: Settings, db: AsyncDatabase[Document]
) -> None:
    await sandbox_app(db)
    providers = AppProviders(settings, Apps(db, Vault(None)), Governor(db, {}))
    try:
        with pytest.raises(ProviderAuthError) as refused:
            await providers.get(APP, "fcm")
    finally:
        await providers.aclose()
    assert (refused.value.provider, refused.value.reason) == ("sandbox", "NoEmulators")
