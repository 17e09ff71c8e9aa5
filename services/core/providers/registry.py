"""The list of providers, and the per-app cache of built providers.

`PROVIDERS` is the one place a provider is named: everything else (job topics, the
resolver's routing, classification and payload rules, the apps' credential slots, the
sender's agents) is derived from the classes it lists. Adding a provider is one module
and one line here. A deployment adds its own providers without editing Pushline through
`PUSHLINE_EXTRA_PROVIDERS` (`name=module:Class`, comma separated), which every service
installs at start-up (`install`).

Provider modules are imported on first use, so a worker that only sends Web Push never
imports firebase-admin.
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
from functools import cache
from typing import Any, Final

from services.core.errors import ConfigError
from services.core.providers.base import Provider, ProviderSettings

# provider name -> "module:Class"
PROVIDERS: Final[Mapping[str, str]] = {
    "fcm": "services.core.providers.fcm:FCMProvider",
    "apns": "services.core.providers.apns:APNsProvider",
    "webpush": "services.core.providers.webpush:WebPushProvider",
}

# `PROVIDERS` and the providers installed from the settings, in that order, and their
# names (read for every job the resolver routes: kept, not rebuilt).
_installed: dict[str, str] = dict(PROVIDERS)
_names: tuple[str, ...] = tuple(PROVIDERS)

# (app id, provider name) -> the app's decrypted credentials for that provider.
CredentialLoader = Callable[[str, str], Awaitable[Mapping[str, Any]]]


def install(extra: Mapping[str, str]) -> None:
    """Serve the providers `extra` names (name -> "module:Class") beside `PROVIDERS`, from
    now on in this process (`PUSHLINE_EXTRA_PROVIDERS`, which `load_settings` checks).

    Raises ConfigError, with nothing changed, for a name `PROVIDERS` already has or a class
    that cannot be loaded (see `provider_class`).
    """
    taken = sorted(PROVIDERS.keys() & extra.keys())
    if taken:
        raise ConfigError(f"providers {', '.join(taken)} are built in")
    for name, target in extra.items():
        _load(name, target)
    global _names
    _installed.clear()
    _installed.update({**PROVIDERS, **extra})
    _names = tuple(_installed)


def names() -> tuple[str, ...]:
    """Every provider this process serves, `PROVIDERS` first."""
    return _names


def provider_class(name: str) -> type[Provider]:
    """The class registered for `name`, imported now if it was not yet.

    Raises ConfigError for a name no module is registered for, or whose class is not a
    complete Provider of that name.
    """
    try:
        target = _installed[name]
    except KeyError:
        raise ConfigError(f"no push provider is registered as {name!r}") from None
    return _load(name, target)


# What a provider class must say of itself (`Provider` declares them).
_DECLARED: Final = ("title", "credentials_model", "settings_model", "token_limit", "payload_limit")


@cache
def _load(name: str, target: str) -> type[Provider]:
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"provider {name!r}: cannot import {target}") from exc
    if (
        not (isinstance(cls, type) and issubclass(cls, Provider))
        or getattr(cls, "name", None) != name
    ):
        raise ConfigError(f"{target} is not a Provider named {name!r}")
    missing = [attribute for attribute in _DECLARED if not hasattr(cls, attribute)]
    if missing:
        raise ConfigError(f"{target} does not say its {', '.join(missing)}")
    return cls


def provider_settings(
    cls: type[Provider], blocks: Mapping[str, ProviderSettings]
) -> ProviderSettings:
    """`cls`'s settings block among `blocks` (`Settings.providers`), else its defaults."""
    block = blocks.get(cls.name)
    return block if block is not None else cls.settings_model.model_construct()


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

    `settings` are the providers' blocks by name (a provider without one gets its
    defaults). Credentials are loaded (and decrypted, by the loader) when an app is first seen and
    re-read every `recheck_after` seconds, so a rotated key takes effect without a
    restart; the provider is rebuilt only when they changed. At most `max_apps` providers
    are kept; the least recently used is closed first.
    """

    def __init__(
        self,
        settings: Mapping[str, ProviderSettings],
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
            built = cls.from_credentials(credentials, provider_settings(cls, self._settings))
            self._entries[key] = _Entry(built, fingerprint, time.monotonic())
            self._entries.move_to_end(key)
            if entry is not None:
                await entry.provider.aclose()
            await self._evict()
            return built

    async def aclose(self) -> None:
        """Close every cached provider."""
        while self._entries:
            _, entry = self._entries.popitem()
            await entry.provider.aclose()

    async def _evict(self) -> None:
        while len(self._entries) > self._max_apps:
            _, entry = self._entries.popitem(last=False)
            await entry.provider.aclose()
