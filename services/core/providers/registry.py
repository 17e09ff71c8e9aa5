"""Which class serves each provider, and the per-app cache of built providers.

Provider modules are imported on first use, so a worker that only sends Web Push never
imports firebase-admin. Adding a provider is one module and one line in `PROVIDERS`.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from services.core.errors import ConfigError
from services.core.providers.base import Provider
from services.core.settings import Settings

# provider name -> "module:Class"
PROVIDERS: Final[Mapping[str, str]] = {
    "fcm": "services.core.providers.fcm:FCMProvider",
    "apns": "services.core.providers.apns:APNsProvider",
    "webpush": "services.core.providers.webpush:WebPushProvider",
}

# (app id, provider name) -> the app's decrypted credentials for that provider.
CredentialLoader = Callable[[str, str], Awaitable[Mapping[str, Any]]]


def provider_class(name: str) -> type[Provider]:
    """The class registered for `name`, imported now if it was not yet.

    Raises ConfigError for a name no module is registered for.
    """
    try:
        target = PROVIDERS[name]
    except KeyError:
        raise ConfigError(f"no push provider is registered as {name!r}") from None
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise ConfigError(f"{target} is not a Provider")
    return cls


def _fingerprint(credentials: Mapping[str, Any]) -> str:
    encoded = json.dumps(credentials, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()


@dataclass
class _Entry:
    provider: Provider
    fingerprint: str
    checked_at: float


class ProviderCache:
    """Providers built once per (app, provider) and reused for every message.

    Credentials are loaded (and decrypted, by the loader) when an app is first seen and
    re-read every `recheck_after` seconds, so a rotated key takes effect without a
    restart; the provider is rebuilt only when they changed. At most `max_apps` providers
    are kept; the least recently used is closed first.
    """

    def __init__(
        self,
        settings: Settings,
        load_credentials: CredentialLoader,
        *,
        max_apps: int = 1000,
        recheck_after: float = 300.0,
    ) -> None:
        self._settings = settings
        self._load = load_credentials
        self._max_apps = max_apps
        self._recheck_after = recheck_after
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def get(self, app_id: str, provider: str) -> Provider:
        """The app's provider, built on first use.

        Raises ConfigError for an unknown provider, ProviderAuthError when the app's
        credentials are malformed or unusable, and whatever the loader raises (for
        instance StoreUnavailableError).
        """
        key = (app_id, provider)
        entry = self._entries.get(key)
        now = time.monotonic()
        if entry is not None and now - entry.checked_at < self._recheck_after:
            self._entries.move_to_end(key)
            return entry.provider
        async with self._locks.setdefault(key, asyncio.Lock()):
            entry = self._entries.get(key)
            if entry is not None and now - entry.checked_at < self._recheck_after:
                return entry.provider
            cls = provider_class(provider)
            credentials = await self._load(app_id, provider)
            fingerprint = _fingerprint(credentials)
            if entry is not None and entry.fingerprint == fingerprint:
                entry.checked_at = time.monotonic()
                self._entries.move_to_end(key)
                return entry.provider
            built = cls.from_credentials(credentials, self._settings)
            self._entries[key] = _Entry(built, fingerprint, time.monotonic())
            self._entries.move_to_end(key)
            if entry is not None:
                await entry.provider.aclose()
            await self._evict()
            return built

    async def forget(self, app_id: str, provider: str | None = None) -> None:
        """Close and drop the app's providers (after its credentials changed)."""
        for key in [key for key in self._entries if key[0] == app_id]:
            if provider is None or key[1] == provider:
                await self._entries.pop(key).provider.aclose()

    async def aclose(self) -> None:
        """Close every cached provider."""
        while self._entries:
            _, entry = self._entries.popitem()
            await entry.provider.aclose()

    async def _evict(self) -> None:
        while len(self._entries) > self._max_apps:
            _, entry = self._entries.popitem(last=False)
            await entry.provider.aclose()
