from __future__ import annotations

import pytest

from services.core.events import RegisterDevice, WebPushKeys, WebPushSubscription
from services.resolver.registrations import choose_provider, configured_providers

APNS_TOKEN = "a" * 64


def device(platform: str, token: str, web: bool = False) -> RegisterDevice:
    subscription = (
        WebPushSubscription(
            endpoint="https://push.example/abc", keys=WebPushKeys(p256dh="p", auth="a")
        )
        if web
        else None
    )
    return RegisterDevice.model_validate(
        {
            "request_id": "r",
            "account_id": "a",
            "app_id": "b",
            "platform": platform,
            "token": token,
            "subscription": subscription,
        }
    )


@pytest.mark.parametrize(
    ("platform", "token", "web", "configured", "expected"),
    [
        ("android", "fcm-token", False, {"fcm"}, "fcm"),
        ("ios", APNS_TOKEN, False, {"fcm", "apns"}, "apns"),
        ("ios", APNS_TOKEN, False, {"fcm"}, "fcm"),
        ("ios", "fcm:token-from-firebase-ios-sdk", False, {"fcm", "apns"}, "fcm"),
        ("web", "https://push.example/abc", True, {"webpush"}, "webpush"),
        ("web", "fcm-web-token", False, {"fcm", "webpush"}, "fcm"),
    ],
)
def test_provider_choice(
    platform: str, token: str, web: bool, configured: set[str], expected: str
) -> None:
    assert choose_provider(device(platform, token, web), configured) == expected  # type: ignore[arg-type]


def test_sandbox_apps_can_use_every_provider() -> None:
    assert configured_providers({"sandbox": True}) == {"fcm", "apns", "webpush"}
    assert configured_providers({"providers": {"apns": {}}}) == {"apns"}
    assert configured_providers({}) == set()
