"""The provider tests' fixtures: the emulators, run once per module and reset per test,
and each provider adapter pointed at its emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from services.core.credentials import FCMCredentials, WebPushCredentials
from services.core.providers.apns import APNsProvider
from services.core.providers.fcm import FCMProvider, FCMSettings
from services.core.providers.webpush import WebPushProvider, WebPushSettings
from services.sandbox.emulators import EmulatorThread
from tests.integration.providers.emulated import Emulators, apns_credentials, apns_settings
from tests.unit.providers.keys import VapidPair, vapid_pair


@pytest.fixture(scope="module")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulators]:
    running = Emulators(tmp_path_factory.mktemp("emulators"))
    with EmulatorThread(running.fcm, running.apns, running.webpush):
        yield running


@pytest.fixture
def fresh(emulators: Emulators) -> Emulators:
    emulators.reset()
    return emulators


@pytest.fixture
async def fcm(fresh: Emulators) -> AsyncIterator[FCMProvider]:
    provider = FCMProvider(
        FCMCredentials(service_account=fresh.fcm.service_account()),
        FCMSettings(endpoint=fresh.fcm.url),
    )
    try:
        yield provider
    finally:
        await provider.aclose()


@pytest.fixture
async def apns(fresh: Emulators) -> AsyncIterator[APNsProvider]:
    provider = APNsProvider(apns_credentials(fresh.apns), apns_settings(fresh.apns))
    try:
        yield provider
    finally:
        await provider.aclose()


@pytest.fixture
def vapid() -> VapidPair:
    return vapid_pair()


@pytest.fixture
async def webpush(fresh: Emulators, vapid: VapidPair) -> AsyncIterator[WebPushProvider]:
    provider = WebPushProvider(
        WebPushCredentials(
            vapid_private_key=vapid.private,
            vapid_public_key=vapid.public,
            subject="mailto:ops@pushline.example",
        ),
        WebPushSettings(allow_private=True),
    )
    try:
        yield provider
    finally:
        await provider.aclose()
