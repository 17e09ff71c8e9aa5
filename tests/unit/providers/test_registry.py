"""The lazy provider registry and the per-app provider cache."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pytest

from services.core.errors import ConfigError, ProviderAuthError
from services.core.events import PushJob
from services.core.providers.base import Provider, Result
from services.core.providers.registry import (
    PROVIDERS,
    ProviderCache,
    install,
    names,
    provider_class,
)
from services.core.providers.webpush import WebPushProvider
from tests.unit.providers.keys import vapid_pair


def test_each_registered_name_resolves_to_its_provider() -> None:
    for name in PROVIDERS:
        cls = provider_class(name)
        assert issubclass(cls, Provider)
        assert cls.name == name
    with pytest.raises(ConfigError, match="huawei"):
        provider_class("huawei")


class Nameless(Provider):
    async def send(self, jobs: Sequence[PushJob]) -> list[Result]:
        return []


class Unsaid(Nameless):
    name: ClassVar = "unsaid"


def test_extra_providers_are_checked_then_served_beside_the_built_in_ones() -> None:
    here = "tests.unit.providers.test_registry"
    with pytest.raises(ConfigError, match="does not say its title, credentials_model"):
        install({"unsaid": f"{here}:Unsaid"})
    with pytest.raises(ConfigError, match="is not a Provider named 'nameless'"):
        install({"nameless": f"{here}:Nameless"})
    with pytest.raises(ConfigError, match="fcm are built in"):
        install({"fcm": f"{here}:Unsaid"})
    assert names() == tuple(PROVIDERS)
    try:
        install({"dummy": "tests.integration.dummy:DummyProvider"})
        assert names() == ("fcm", "apns", "webpush", "dummy")
        assert provider_class("dummy").title == "Dummy"
    finally:
        install({})
    assert names() == tuple(PROVIDERS)


def test_registry_imports_provider_modules_only_on_use() -> None:
    code = (
        "import sys; import services.core.providers.registry as r; "
        "before = 'firebase_admin' in sys.modules; r.provider_class('webpush'); "
        "print(before, 'firebase_admin' in sys.modules, 'pycurl' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "False", "False"]


class Loader:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.credentials: dict[str, dict[str, Any]] = {}

    def set_app(self, app_id: str) -> None:
        pair = vapid_pair()
        self.credentials[app_id] = {
            "vapid_private_key": pair.private,
            "vapid_public_key": pair.public,
            "subject": "mailto:ops@pushline.example",
        }

    async def __call__(self, app_id: str, provider: str) -> Mapping[str, Any]:
        self.calls.append((app_id, provider))
        return self.credentials[app_id]


@pytest.fixture
def loader() -> Loader:
    made = Loader()
    made.set_app("app-1")
    made.set_app("app-2")
    return made


async def test_one_provider_per_app_built_once(loader: Loader) -> None:
    cache = ProviderCache({}, loader)
    try:
        first = await cache.get("app-1", "webpush")
        again = await cache.get("app-1", "webpush")
        other = await cache.get("app-2", "webpush")
    finally:
        await cache.aclose()
    assert first is again
    assert isinstance(first, WebPushProvider)
    assert other is not first
    assert loader.calls == [("app-1", "webpush"), ("app-2", "webpush")]


async def test_rechecked_credentials_rebuild_only_when_changed(loader: Loader) -> None:
    cache = ProviderCache({}, loader, recheck_after=0)
    try:
        first = await cache.get("app-1", "webpush")
        assert await cache.get("app-1", "webpush") is first  # re-read, unchanged
        loader.set_app("app-1")  # rotated keys
        rotated = await cache.get("app-1", "webpush")
    finally:
        await cache.aclose()
    assert rotated is not first
    assert len(loader.calls) == 3


async def test_malformed_credentials_are_an_auth_error_without_secrets(loader: Loader) -> None:
    loader.credentials["app-3"] = {"vapid_private_key": "SECRET-VALUE", "subject": "nope"}
    cache = ProviderCache({}, loader)
    with pytest.raises(ProviderAuthError) as caught:
        await cache.get("app-3", "webpush")
    assert caught.value.reason == "MalformedCredentials"
    assert "vapid_public_key" in str(caught.value)
    assert "SECRET-VALUE" not in str(caught.value)
    assert "SECRET-VALUE" not in str(caught.value.__cause__)


async def test_least_recently_used_app_is_closed_and_dropped(loader: Loader) -> None:
    loader.set_app("app-3")
    cache = ProviderCache({}, loader, max_apps=2)
    try:
        one = await cache.get("app-1", "webpush")
        await cache.get("app-2", "webpush")
        await cache.get("app-1", "webpush")  # app-2 is now the least recently used
        await cache.get("app-3", "webpush")
        assert await cache.get("app-1", "webpush") is one
        await cache.get("app-2", "webpush")
    finally:
        await cache.aclose()
    assert loader.calls.count(("app-2", "webpush")) == 2
    assert loader.calls.count(("app-1", "webpush")) == 1
