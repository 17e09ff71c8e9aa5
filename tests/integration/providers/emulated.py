"""What the provider tests share: the emulators of FCM, APNs and Web Push, and the jobs
and credentials that reach them (the fixtures are in conftest.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.core.credentials import APNSCredentials
from services.core.events import Content, PushJob, WebPushSubscription
from services.core.providers.apns import APNSSettings
from services.sandbox.emulators import APNSEmulator, FCMEmulator, WebPushEmulator
from tests.unit.providers.keys import VapidPair

ACCEPTED = datetime(2026, 11, 23, tzinfo=UTC)
DEVICE = "ab" * 32


class Emulators:
    def __init__(self, cert_dir: Path) -> None:
        self.fcm = FCMEmulator(project_id="demo-project")
        self.apns = APNSEmulator(cert_dir=cert_dir)
        self.webpush = WebPushEmulator()

    def reset(self) -> None:
        for emulator in (self.fcm, self.apns, self.webpush):
            emulator.controls.reset()


def job(provider: str, token: str, **fields: Any) -> PushJob:
    platform = {"fcm": "android", "apns": "ios", "webpush": "web"}[provider]
    values: dict[str, Any] = {
        "notification_id": "n1",
        "account_id": "acc",
        "app_id": "app",
        "provider": provider,
        "platform": platform,
        "token": token,
        "token_hash": "h",
        "notification": Content(title="Hi", body="There"),
        "accepted_at": ACCEPTED,
    }
    values.update(fields)
    return PushJob(**values)


def apns_credentials(apns: APNSEmulator, **fields: Any) -> APNSCredentials:
    values: dict[str, Any] = {
        "team_id": apns.team_id,
        "key_id": apns.key_id,
        "topic": apns.topics[0],
        "private_key": apns.key_pem,
        "sandbox": True,
    }
    values.update(fields)
    return APNSCredentials(**values)


def apns_settings(apns: APNSEmulator) -> APNSSettings:
    return APNSSettings(endpoint=apns.url, ca_file=apns.tls.ca_file)


def subscribed(fresh: Emulators, vapid: VapidPair, key: str | None = None) -> WebPushSubscription:
    return WebPushSubscription.model_validate(
        fresh.webpush.subscribe(application_server_key=key or vapid.public)
    )


def webpush_job(subscription: WebPushSubscription, **fields: Any) -> PushJob:
    return job("webpush", subscription.endpoint, subscription=subscription, **fields)
