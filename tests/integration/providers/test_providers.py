"""Each provider adapter against the project's emulators of FCM, APNs and Web Push.

The emulators speak the real protocols (OAuth + FCM v1 JSON, HTTP/2 + TLS + JWT, RFC 8291
bodies) and record what they received, so these tests assert the exact payloads that
reached the provider and how each of the provider's error answers is classified.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pymongo.asynchronous.database import AsyncDatabase

from services.core.credentials import FCMCredentials
from services.core.errors import ProviderQuotaError, ProviderUnavailableError
from services.core.events import Content, Options
from services.core.providers.apns import APNsProvider
from services.core.providers.classify import ErrorClass
from services.core.providers.fcm import FCMProvider, FCMSettings
from services.core.providers.webpush import WebPushProvider
from services.core.store.client import Document
from services.sandbox.emulators import FCMEmulator, TokenState
from tests.integration.dispatching import Harness
from tests.integration.providers.emulated import (
    ACCEPTED,
    DEVICE,
    Emulators,
    apns_credentials,
    apns_settings,
    job,
    subscribed,
    webpush_job,
)
from tests.unit.providers.keys import VapidPair, vapid_pair

GONE = "cd" * 32
BAD = "ef" * 32

FULL = {
    "notification": Content(title="Hi", body="There", image_url="https://img.example/a.png"),
    "data": {"order": "42"},
    "options": Options(ttl=3600, priority="high", collapse_key="order-42"),
}


# FCM


async def test_fcm_delivers_exactly_the_mapped_message(fresh: Emulators, fcm: FCMProvider) -> None:
    [result] = await fcm.send([job("fcm", "device-1", **FULL)])
    assert result.outcome == "success"
    [record] = fresh.fcm.controls.records()
    assert record.status == 200
    assert (result.provider_message_id or "").startswith("projects/demo-project/messages/0:")
    assert record.payload == {
        "message": {
            "token": "device-1",
            "notification": {
                "title": "Hi",
                "body": "There",
                "image": "https://img.example/a.png",
            },
            "data": {"order": "42"},
            "android": {"collapse_key": "order-42", "priority": "high", "ttl": "3600s"},
            "apns": {
                "headers": {
                    "apns-priority": "10",
                    "apns-expiration": str(int(ACCEPTED.timestamp()) + 3600),
                    "apns-collapse-id": "order-42",
                },
                "payload": {"aps": {"mutable-content": 1}},
            },
            "webpush": {"headers": {"Urgency": "high", "TTL": "3600"}},
        }
    }


async def test_fcm_verify_is_validate_only(fresh: Emulators, fcm: FCMProvider) -> None:
    [result] = await fcm.send([job("fcm", "device-1", kind="verify", registration_id="r1")])
    assert result.provider_message_id == "projects/demo-project/messages/fake_message_id"
    [record] = fresh.fcm.controls.records()
    assert record.payload["validate_only"] is True


async def test_fcm_token_answers_are_classified(fresh: Emulators, fcm: FCMProvider) -> None:
    fresh.fcm.controls.mark(["gone"], TokenState.UNREGISTERED)
    fresh.fcm.controls.mark(["bad"], TokenState.INVALID)
    ok, gone, bad = await fcm.send([job("fcm", "ok"), job("fcm", "gone"), job("fcm", "bad")])
    assert ok.outcome == "success"
    assert (gone.outcome, gone.error_class, gone.reason, gone.status) == (
        "invalid_token",
        ErrorClass.INVALID_TOKEN,
        "UNREGISTERED",
        404,
    )
    assert (bad.outcome, bad.error_class, bad.reason, bad.status) == (
        "invalid_token",
        ErrorClass.INVALID_TOKEN,
        "INVALID_ARGUMENT",
        400,
    )


async def test_fcm_quota_carries_retry_after_then_delivers(
    fresh: Emulators, fcm: FCMProvider
) -> None:
    fresh.fcm.controls.fail(429, count=1, retry_after=30)
    [throttled] = await fcm.send([job("fcm", "a")])
    assert isinstance(throttled.error, ProviderQuotaError)
    assert (throttled.outcome, throttled.reason, throttled.retry_after) == (
        "retry",
        "QUOTA_EXCEEDED",
        30.0,
    )
    [again] = await fcm.send([job("fcm", "a")])
    assert again.outcome == "success"


async def test_fcm_503_reaches_the_sender_after_one_request(
    fresh: Emulators, fcm: FCMProvider
) -> None:
    fresh.fcm.controls.fail(503, count=5)
    started = time.monotonic()
    [result] = await fcm.send([job("fcm", "a")])
    assert time.monotonic() - started < 3  # firebase-admin's own retries would take ~7 s
    assert isinstance(result.error, ProviderUnavailableError)
    assert (result.outcome, result.error_class, result.reason) == (
        "retry",
        ErrorClass.RETRYABLE,
        "UNAVAILABLE",
    )
    assert [r.status for r in fresh.fcm.controls.records()] == [503]


async def test_fcm_foreign_service_account_is_auth_config(fresh: Emulators) -> None:
    account = FCMEmulator(project_id="demo-project").service_account()
    account["token_uri"] = fresh.fcm.token_uri  # same names, another key
    provider = FCMProvider(
        FCMCredentials(service_account=account), FCMSettings(endpoint=fresh.fcm.url)
    )
    try:
        [result] = await provider.send([job("fcm", "a")])
    finally:
        await provider.aclose()
    assert (result.outcome, result.error_class) == ("failed", ErrorClass.AUTH_CONFIG)
    assert fresh.fcm.controls.records() == []


@pytest.mark.parametrize(
    ("body", "project", "bearer", "expected"),
    [
        ({"message": {"token": "a", "data": {"k": "x" * 5000}}}, "demo-project", True,
         ErrorClass.MESSAGE_INVALID),
        ({"message": {"token": "a", "colour": "red"}}, "demo-project", True,
         ErrorClass.MESSAGE_INVALID),
        ({"message": {"token": "a", "data": {"from": "x"}}}, "demo-project", True,
         ErrorClass.MESSAGE_INVALID),
        ({"message": {"token": "has space"}}, "demo-project", True, ErrorClass.INVALID_TOKEN),
        ({"message": {"token": "a"}}, "other-project", True, ErrorClass.AUTH_CONFIG),
        ({"message": {"token": "a"}}, "demo-project", False, ErrorClass.AUTH_CONFIG),
    ],
)  # fmt: skip
async def test_fcm_emulator_error_bodies_classify(
    fresh: Emulators, body: dict[str, Any], project: str, bearer: bool, expected: ErrorClass
) -> None:
    token = fresh.fcm.issue_access_token() if bearer else "forged"
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"{fresh.fcm.url}/v1/projects/{project}/messages:send",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        )
    error = answer.json()["error"]
    assert (
        FCMProvider.classify(answer.status_code, error["status"], error.get("details", []))
        is expected
    )


# APNs


async def test_apns_delivers_exactly_the_mapped_notification(
    fresh: Emulators, apns: APNsProvider
) -> None:
    before = int(time.time())
    [result] = await apns.send([job("apns", DEVICE, **FULL)])
    assert result.outcome == "success"
    [record] = fresh.apns.controls.records()
    assert (record.status, record.target) == (200, DEVICE)
    assert record.payload == {
        "order": "42",
        "image_url": "https://img.example/a.png",
        "aps": {"alert": {"title": "Hi", "body": "There"}, "mutable-content": 1},
    }
    headers = dict(record.headers)
    expiration = int(headers.pop("apns-expiration"))
    assert before + 3600 <= expiration <= int(time.time()) + 3600
    assert headers == {
        "apns-id": result.provider_message_id,
        "apns-topic": fresh.apns.topics[0],
        "apns-push-type": "alert",
        "apns-priority": "10",
        "apns-collapse-id": "order-42",
    }


async def test_apns_answers_are_classified(fresh: Emulators, apns: APNsProvider) -> None:
    gone_at = 1_795_000_000_000
    fresh.apns.controls.mark([GONE], TokenState.UNREGISTERED, at_ms=gone_at)
    fresh.apns.controls.mark([BAD], TokenState.INVALID)
    ok, gone, bad = await apns.send([job("apns", DEVICE), job("apns", GONE), job("apns", BAD)])
    assert ok.outcome == "success"
    assert (gone.outcome, gone.reason, gone.status) == ("invalid_token", "Unregistered", 410)
    assert gone.invalid_since == datetime.fromtimestamp(gone_at / 1000, UTC)
    assert (bad.outcome, bad.reason, bad.status) == ("invalid_token", "BadDeviceToken", 400)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("status", "reason"),
    [(429, "TooManyRequests"), (500, "InternalServerError"), (503, "ServiceUnavailable")],
)
async def test_apns_faults_are_retried_by_the_sender(
    fresh: Emulators,
    apns: APNsProvider,
    db: AsyncDatabase[Document],
    status: int,
    reason: str,
) -> None:
    fresh.apns.controls.fail(status, count=1)
    sender = Harness(db, apns, "apns")
    await sender.run(job("apns", DEVICE))
    assert [(o.outcome, o.reason) for o in sender.outcomes()] == [
        ("retry", reason),
        ("success", None),
    ]
    assert [r.status for r in fresh.apns.controls.records()] == [status, 200]
    assert (sender.acked, sender.letters()) == ([DEVICE], [])


async def test_apns_wrong_topic_or_key_is_auth_config_not_invalid_token(
    fresh: Emulators,
) -> None:
    other_key = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    for credentials, reason in [
        (apns_credentials(fresh.apns, topic="com.other.app"), "DeviceTokenNotForTopic"),
        (apns_credentials(fresh.apns, private_key=other_key), "InvalidProviderToken"),
    ]:
        provider = APNsProvider(credentials, apns_settings(fresh.apns))
        try:
            [result] = await provider.send([job("apns", DEVICE)])
        finally:
            await provider.aclose()
        assert (result.outcome, result.error_class, result.reason) == (
            "failed",
            ErrorClass.AUTH_CONFIG,
            reason,
        )


# Web Push


async def test_webpush_delivers_exactly_the_mapped_plaintext(
    fresh: Emulators, webpush: WebPushProvider, vapid: VapidPair
) -> None:
    subscription = subscribed(fresh, vapid)
    [result] = await webpush.send([webpush_job(subscription, **FULL)])
    assert (result.outcome, result.status) == ("success", 201)
    [record] = fresh.webpush.controls.records()
    assert record.target == subscription.endpoint
    assert record.payload == {
        "notification": {"title": "Hi", "body": "There", "image": "https://img.example/a.png"},
        "data": {"order": "42"},
    }
    assert record.headers == {
        "ttl": "3600",
        "urgency": "high",
        "topic": "order-42",
        "content-encoding": "aes128gcm",
    }
    assert (result.provider_message_id or "").startswith(f"{fresh.webpush.url}/m/")


async def test_webpush_answers_are_classified(
    fresh: Emulators, webpush: WebPushProvider, vapid: VapidPair
) -> None:
    ok, gone, bad = (subscribed(fresh, vapid) for _ in range(3))
    fresh.webpush.controls.mark([gone.endpoint], TokenState.UNREGISTERED)
    fresh.webpush.controls.mark([bad.endpoint], TokenState.INVALID)
    foreign = subscribed(fresh, vapid, key=vapid_pair().public)  # bound to another VAPID key
    results = await webpush.send([webpush_job(s) for s in (ok, gone, bad, foreign)])
    assert [(r.outcome, r.error_class, r.status) for r in results] == [
        ("success", None, 201),
        ("invalid_token", ErrorClass.INVALID_TOKEN, 410),
        ("invalid_token", ErrorClass.INVALID_TOKEN, 404),
        ("failed", ErrorClass.AUTH_CONFIG, 403),
    ]


@pytest.mark.parametrize(
    ("status", "error_class"), [(429, ErrorClass.QUOTA), (503, ErrorClass.RETRYABLE)]
)
async def test_webpush_faults_carry_retry_after(
    fresh: Emulators,
    webpush: WebPushProvider,
    vapid: VapidPair,
    status: int,
    error_class: ErrorClass,
) -> None:
    subscription = subscribed(fresh, vapid)
    fresh.webpush.controls.fail(status, count=1, retry_after=2)
    [failed] = await webpush.send([webpush_job(subscription)])
    assert (failed.outcome, failed.error_class, failed.retry_after) == ("retry", error_class, 2.0)
    [again] = await webpush.send([webpush_job(subscription)])
    assert again.outcome == "success"
