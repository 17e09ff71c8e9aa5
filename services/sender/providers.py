"""Each app's provider clients: built from its own credentials, or, for sandbox apps,
pointed at the built-in emulators that `pushline emulators` runs (FCM, APNs and Web Push:
a provider without an emulator has no sandbox)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from services.core import outbound
from services.core.errors import ProviderAuthError
from services.core.providers import registry
from services.core.providers.apns import APNsProvider
from services.core.providers.base import Provider
from services.core.providers.fcm import FCMProvider
from services.core.providers.registry import ProviderCache
from services.core.providers.webpush import WebPushProvider, WebPushSettings
from services.core.settings import Settings
from services.core.store.apps import Apps

# How long an app's sandbox flag is trusted before it is read again.
_FLAG_TTL = 60.0


class AppProviders:
    """`get(app_id, provider)` for the dispatcher; clients are cached per app."""

    def __init__(self, settings: Settings, apps: Apps) -> None:
        self._settings = settings
        self._apps = apps
        self._own = ProviderCache(settings.provider_settings, self._own_credentials)
        self._sandbox: ProviderCache | None = None
        self._emulators: dict[str, Any] = {}
        self._flags: dict[str, tuple[bool, float]] = {}

    async def get(self, app_id: str, provider: str) -> Provider:
        """The app's provider. Raises ProviderAuthError when the app cannot use it (no
        credentials, unusable credentials, or a sandbox app while no emulators run)."""
        if await self._is_sandbox(app_id):
            return await self._sandbox_cache().get(app_id, provider)
        return await self._own.get(app_id, provider)

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

    def _sandbox_cache(self) -> ProviderCache:
        clients = self._settings.state_dir / "emulators" / "clients.json"
        try:
            self._emulators = json.loads(clients.read_text())
        except (OSError, ValueError) as exc:
            raise ProviderAuthError(
                f"sandbox app, but the emulators are not running ({clients} unreadable)",
                provider="sandbox",
                reason="NoEmulators",
            ) from exc
        if self._sandbox is None:
            apns = self._emulators["apns"]
            webpush = urlsplit(self._emulators["webpush"]["endpoint"])
            emulator = outbound.host_port(webpush.hostname or "", webpush.port or 80)
            blocks = self._settings.provider_settings
            web = registry.provider_settings(WebPushProvider, blocks)
            assert isinstance(web, WebPushSettings)
            pointed = {
                **blocks,
                "fcm": registry.provider_settings(FCMProvider, blocks).model_copy(
                    update={"endpoint": self._emulators["fcm"]["endpoint"]}
                ),
                "apns": registry.provider_settings(APNsProvider, blocks).model_copy(
                    update={"endpoint": apns["endpoint"], "ca_file": Path(apns["ca_file"])}
                ),
                # The Web Push emulator listens on loopback: a sandbox app's subscriptions
                # may reach it, and no other private address.
                "webpush": web.model_copy(
                    update={"private_targets": (*web.private_targets, emulator)}
                ),
            }
            self._sandbox = ProviderCache(pointed, self._sandbox_credentials)
        return self._sandbox

    async def _sandbox_credentials(self, app_id: str, provider: str) -> Mapping[str, Any]:
        if provider == "fcm":
            return {"service_account": self._emulators["fcm"]["service_account"]}
        if provider == "apns":
            apns = self._emulators["apns"]
            return {
                "team_id": apns["team_id"],
                "key_id": apns["key_id"],
                "topic": apns["topics"][0],
                "private_key": apns["key"],
                "sandbox": False,
            }
        if provider == "webpush":
            vapid: dict[str, Any] = self._emulators["webpush"]["vapid"]
            return vapid
        raise ProviderAuthError(
            f"sandbox app, but {provider} has no emulator", provider=provider, reason="NoEmulator"
        )
