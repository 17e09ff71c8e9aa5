"""Each app's provider clients: built from its own credentials, or, for sandbox apps,
pointed at the emulators the sandbox settings name (`PUSHLINE_SANDBOX_*`, which
`pushline emulators` provides; a provider without one has no sandbox)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from services.core import outbound
from services.core.errors import ProviderAuthError
from services.core.events import PushJob
from services.core.providers import registry
from services.core.providers.apns import APNsProvider
from services.core.providers.base import Provider, ProviderSettings, Result
from services.core.providers.fcm import FCMProvider
from services.core.providers.registry import ProviderCache
from services.core.providers.webpush import WebPushProvider, WebPushSettings
from services.core.settings import SandboxSettings, Settings
from services.core.store.apps import Apps
from services.sender.governor import Governor

# How long an app's sandbox flag is trusted before it is read again.
_FLAG_TTL = 60.0


class AppProviders:
    """`get(app_id, provider)` for the dispatcher; clients are cached per app. Their calls
    wait for their quota scopes (`admit`) and report the provider's 429s (`answered`)."""

    def __init__(self, settings: Settings, apps: Apps, governor: Governor) -> None:
        self._sandbox_settings = settings.sandbox
        self._apps = apps
        self._governor = governor
        self._own = ProviderCache(settings.provider_settings, self._own_credentials)
        self._sandbox = (
            ProviderCache(
                _pointed(settings.provider_settings, settings.sandbox), self._sandbox_credentials
            )
            if settings.sandbox.configured
            else None
        )
        self._flags: dict[str, tuple[bool, float]] = {}

    async def get(self, app_id: str, provider: str) -> Provider:
        """The app's provider. Raises ProviderAuthError when the app cannot use it (no
        credentials, unusable credentials, or a sandbox app while no emulators are
        configured)."""
        if await self._is_sandbox(app_id):
            if self._sandbox is None:
                raise ProviderAuthError(
                    "sandbox app, but no emulators are configured (PUSHLINE_SANDBOX_*)",
                    provider="sandbox",
                    reason="NoEmulators",
                )
            return await self._sandbox.get(app_id, provider)
        return await self._own.get(app_id, provider)

    async def admit(
        self, provider: Provider, jobs: Sequence[PushJob], given_up: Callable[[], bool]
    ) -> bool:
        """Wait until `provider`'s quota lets `jobs` be sent (Governor.admit)."""
        return await self._governor.admit(provider, jobs, given_up)

    async def answered(
        self, provider: Provider, jobs: Sequence[PushJob], results: Sequence[Result]
    ) -> None:
        """What `provider` answered for `jobs`, for the quota (Governor.answered)."""
        await self._governor.answered(provider, jobs, results)

    async def aclose(self) -> None:
        """Close every client."""
        await self._own.aclose()
        if self._sandbox is not None:
            await self._sandbox.aclose()

    async def _is_sandbox(self, app_id: str) -> bool:
        flag, read_at = self._flags.get(app_id, (False, -_FLAG_TTL))
        if time.monotonic() - read_at >= _FLAG_TTL:
            app = await self._apps.get(app_id)
            flag = app is not None and app.sandbox
            self._flags[app_id] = (flag, time.monotonic())
        return flag

    async def _own_credentials(self, app_id: str, provider: str) -> Mapping[str, Any]:
        credentials = await self._apps.credentials(app_id, provider)
        if credentials is None:
            raise ProviderAuthError(
                f"app {app_id} has no {provider} credentials",
                provider=provider,
                reason="NoCredentials",
            )
        return dict(credentials.model_dump())

    async def _sandbox_credentials(self, app_id: str, provider: str) -> Mapping[str, Any]:
        sandbox = self._sandbox_settings
        emulators = {"fcm": sandbox.fcm, "apns": sandbox.apns, "webpush": sandbox.webpush}
        emulator = emulators.get(provider)
        if emulator is None:
            raise ProviderAuthError(
                f"sandbox app, but {provider} has no emulator",
                provider=provider,
                reason="NoEmulator",
            )
        return dict(emulator.credentials.model_dump())


def _pointed(
    blocks: Mapping[str, ProviderSettings], sandbox: SandboxSettings
) -> dict[str, ProviderSettings]:
    """The providers' settings `blocks`, those of the providers `sandbox` has an emulator
    for pointed at it."""
    pointed = dict(blocks)
    if sandbox.fcm is not None:
        pointed["fcm"] = registry.provider_settings(FCMProvider, blocks).model_copy(
            update={"endpoint": sandbox.fcm.endpoint}
        )
    if sandbox.apns is not None:
        pointed["apns"] = registry.provider_settings(APNsProvider, blocks).model_copy(
            update={"endpoint": sandbox.apns.endpoint, "ca_file": sandbox.apns.ca_file}
        )
    if sandbox.webpush is not None:
        endpoint = urlsplit(sandbox.webpush.endpoint)
        emulator = outbound.host_port(endpoint.hostname or "", endpoint.port or 80)
        web = registry.provider_settings(WebPushProvider, blocks)
        assert isinstance(web, WebPushSettings)
        # The Web Push emulator listens on loopback: a sandbox app's subscriptions may
        # reach it, and no other private address.
        pointed["webpush"] = web.model_copy(
            update={"private_targets": (*web.private_targets, emulator)}
        )
    return pointed
