"""The FCM adapter (firebase-admin's credentials and messages, aiohttp requests), against a
real local FCM v1 + OAuth server."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import firebase_admin
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from firebase_admin import credentials, messaging

from services.core.credentials import FCMCredentials
from services.core.errors import (
    MessageInvalidError,
    PayloadTooLargeError,
    ProviderQuotaError,
    ProviderUnavailableError,
)
from services.core.events import AndroidOptions, Content, Options, PushJob
from services.core.overrides import FcmAndroid, FcmAndroidNotification, FcmOverride
from services.core.providers.classify import ErrorClass
from services.core.providers.fcm import HEADERS, FCMProvider, FCMSettings, encoder
from services.core.providers.payload import build_payload
from tests.unit.providers.fcm_server import (
    Answer,
    FakeFCM,
    fcm_detail,
    fcm_error,
    running_fcm,
)

ACCEPTED = datetime(2026, 11, 23, tzinfo=UTC)


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def fcm(rsa_key: rsa.RSAPrivateKey) -> Iterator[FakeFCM]:
    with running_fcm(rsa_key) as fake:
        yield fake


@pytest.fixture
async def provider(fcm: FakeFCM) -> AsyncIterator[FCMProvider]:
    built = FCMProvider(
        FCMCredentials(service_account=fcm.service_account()),
        FCMSettings(endpoint=fcm.base_url),
    )
    try:
        yield built
    finally:
        await built.aclose()


def job(token: str = "tok-a", **fields: Any) -> PushJob:
    values: dict[str, Any] = {
        "notification_id": "n1",
        "account_id": "acc",
        "app_id": "app",
        "provider": "fcm",
        "platform": "android",
        "token": token,
        "token_hash": "h",
        "notification": Content(title="Hi", body="There"),
        "accepted_at": ACCEPTED,
    }
    values.update(fields)
    return PushJob(**values)


def test_firebase_admin_is_the_pinned_release_whose_encoder_and_headers_we_use(
    fcm: FakeFCM,
) -> None:
    # If this fails, a firebase-admin release moved its message encoder or changed the
    # headers it sends: `encoder` and `HEADERS` in services/core/providers/fcm.py must
    # follow before the pin is raised.
    assert firebase_admin.__version__ == "7.7.0"
    assert encoder() == messaging._MessagingService.encode_message
    app = firebase_admin.initialize_app(
        credentials.Certificate(fcm.service_account()), name="pushline-test-headers"
    )
    try:
        service = messaging._get_messaging_service(app)
        assert {
            "Content-Type": "application/json; charset=UTF-8",
            **service._fcm_headers,
        } == HEADERS
    finally:
        firebase_admin.delete_app(app)


async def test_message_maps_to_the_v1_json_exactly(provider: FCMProvider, fcm: FakeFCM) -> None:
    [result] = await provider.send(
        [
            job(
                notification=Content(title="Hi", body="There", image_url="https://i.example/a"),
                data={"order": "42"},
                options=Options(ttl=3600, priority="normal", collapse_key="order-42"),
            )
        ]
    )
    assert result.outcome == "success"
    assert result.provider_message_id == "projects/pushline-test/messages/tok-a"
    assert fcm.paths == ["/v1/projects/pushline-test/messages:send"]
    assert fcm.sends == [
        {
            "message": {
                "token": "tok-a",
                "notification": {"title": "Hi", "body": "There", "image": "https://i.example/a"},
                "data": {"order": "42"},
                "android": {"collapse_key": "order-42", "priority": "normal", "ttl": "3600s"},
                "apns": {
                    "headers": {
                        "apns-priority": "5",
                        "apns-expiration": str(int(ACCEPTED.timestamp()) + 3600),
                        "apns-collapse-id": "order-42",
                    },
                    "payload": {"aps": {"mutable-content": 1}},
                },
                "webpush": {"headers": {"Urgency": "normal", "TTL": "3600"}},
            }
        }
    ]


async def test_data_only_message_is_a_background_push(provider: FCMProvider, fcm: FakeFCM) -> None:
    await provider.send([job(notification=Content(), data={"sync": "1"})])
    assert fcm.sends[0] == {
        "message": {
            "token": "tok-a",
            "data": {"sync": "1"},
            "android": {"priority": "high"},
            "apns": {
                "headers": {"apns-priority": "5", "apns-push-type": "background"},
                "payload": {"aps": {"content-available": 1}},
            },
            "webpush": {"headers": {"Urgency": "high"}},
        }
    }


async def test_shown_options_map_to_android_and_apns(provider: FCMProvider, fcm: FakeFCM) -> None:
    options = Options(
        badge=0,
        sound="default",
        thread_id="order-42",
        category="ORDER",
        interruption_level="passive",
        mutable_content=True,
        android=AndroidOptions(channel_id="orders", color="#FF0000", icon="ic_order"),
    )
    await provider.send([job(notification=Content(title="Hi"), options=options)])
    message = fcm.sends[0]["message"]
    assert message["android"] == {
        "priority": "high",
        "notification": {
            "sound": "default",
            "click_action": "ORDER",
            "channel_id": "orders",
            "color": "#FF0000",
            "icon": "ic_order",
        },
    }
    assert message["apns"]["payload"] == {
        "aps": {
            "badge": 0,
            "sound": "default",
            "thread-id": "order-42",
            "category": "ORDER",
            "interruption-level": "passive",
            "mutable-content": 1,
        }
    }
    assert message["webpush"] == {"headers": {"Urgency": "high"}}


async def test_click_url_tag_image_and_localisation_keys(
    provider: FCMProvider, fcm: FakeFCM
) -> None:
    options = Options(
        click_url="https://shop.example/orders/42",
        tag="order-42",
        title_loc_key="ORDER_TITLE",
        title_loc_args=("42",),
        body_loc_key="ORDER_BODY",
        body_loc_args=("Ana",),
    )
    content = Content(title="Order 42", body="Shipped", image_url="https://i.example/a.png")
    await provider.send([job(notification=content, data={"order": "42"}, options=options)])
    message = fcm.sends[0]["message"]
    assert message["notification"] == {
        "title": "Order 42",
        "body": "Shipped",
        "image": "https://i.example/a.png",
    }
    assert message["data"] == {"order": "42", "click_url": "https://shop.example/orders/42"}
    assert message["android"]["notification"] == {
        "tag": "order-42",
        "title_loc_key": "ORDER_TITLE",
        "title_loc_args": ["42"],
        "body_loc_key": "ORDER_BODY",
        "body_loc_args": ["Ana"],
    }
    assert message["apns"]["payload"] == {
        "aps": {
            "alert": {
                "title": "Order 42",
                "body": "Shipped",
                "title-loc-key": "ORDER_TITLE",
                "title-loc-args": ["42"],
                "loc-key": "ORDER_BODY",
                "loc-args": ["Ana"],
            },
            "mutable-content": 1,
        }
    }
    assert message["webpush"] == {
        "headers": {"Urgency": "high"},
        "fcm_options": {"link": "https://shop.example/orders/42"},
    }


async def test_an_app_link_is_data_only(provider: FCMProvider, fcm: FakeFCM) -> None:
    # FCM opens only https links for the web: a deep link is the app's to open.
    await provider.send([job(options=Options(click_url="shop://orders/42"))])
    message = fcm.sends[0]["message"]
    assert message["data"] == {"click_url": "shop://orders/42"}
    assert message["webpush"] == {"headers": {"Urgency": "high"}}


async def test_the_fcm_override_is_merged_last(provider: FCMProvider, fcm: FakeFCM) -> None:
    options = Options(
        ttl=60,
        sound="default",
        android=AndroidOptions(channel_id="orders"),
        fcm=FcmOverride(
            data={"campaign": "spring", "order": "43"},
            android=FcmAndroid(
                ttl="3.5s",
                direct_boot_ok=True,
                data={"only": "android"},
                notification=FcmAndroidNotification(
                    channel_id="promos", notification_priority="PRIORITY_HIGH", sticky=True
                ),
            ),
        ),
    )
    await provider.send([job(data={"order": "42"}, options=options)])
    message = fcm.sends[0]["message"]
    assert message["data"] == {"order": "43", "campaign": "spring"}
    assert message["android"] == {
        "priority": "high",
        "ttl": "3.5s",
        "direct_boot_ok": True,
        "data": {"only": "android"},
        "notification": {
            "sound": "default",
            "channel_id": "promos",
            "notification_priority": "PRIORITY_HIGH",
            "sticky": True,
        },
    }


def test_fcm_data_overrides_count_and_are_checked() -> None:
    with pytest.raises(MessageInvalidError, match=r"google\.x"):
        FCMProvider.document(
            Content(title="Hi"), {}, Options(fcm=FcmOverride(data={"google.x": "1"}))
        )
    android = FcmAndroid(data={"gcm.x": "1"})
    with pytest.raises(MessageInvalidError, match=r"gcm\.x"):
        FCMProvider.document(Content(title="Hi"), {}, Options(fcm=FcmOverride(android=android)))
    with pytest.raises(MessageInvalidError, match="click_url"):
        FCMProvider.document(
            Content(title="Hi"), {"click_url": "x"}, Options(click_url="https://a.example/")
        )
    big = Options(fcm=FcmOverride(android=FcmAndroid(data={"k": "x" * 4000, "l": "y" * 99})))
    with pytest.raises(PayloadTooLargeError):
        build_payload(FCMProvider, Content(title="Hi"), {}, big)


async def test_content_available_is_a_data_message(provider: FCMProvider, fcm: FakeFCM) -> None:
    options = Options(content_available=True)
    await provider.send([job(notification=Content(), data={"sync": "1"}, options=options)])
    message = fcm.sends[0]["message"]
    assert "notification" not in message
    assert "notification" not in message["android"]
    assert message["apns"] == {
        "headers": {"apns-priority": "5", "apns-push-type": "background"},
        "payload": {"aps": {"content-available": 1}},
    }


async def test_oauth_goes_to_the_service_account_token_uri_once(
    provider: FCMProvider, fcm: FakeFCM
) -> None:
    await provider.send([job("a"), job("b")])
    await provider.send([job("c")])
    assert len(fcm.token_requests) == 1  # a signed JWT grant, verified by the fake
    assert len(fcm.sends) == 3


async def test_verify_jobs_are_dry_runs_and_order_is_kept(
    provider: FCMProvider, fcm: FakeFCM
) -> None:
    results = await provider.send(
        [job("a"), job("b", kind="verify", registration_id="r1"), job("c")]
    )
    assert [r.provider_message_id for r in results] == [
        "projects/pushline-test/messages/a",
        "projects/pushline-test/messages/fake_message_id",
        "projects/pushline-test/messages/c",
    ]
    by_token = {body["message"]["token"]: body for body in fcm.sends}
    assert by_token["b"]["validate_only"] is True
    assert "validate_only" not in by_token["a"]


@pytest.mark.parametrize(
    ("answer", "outcome", "error_class", "reason"),
    [
        (fcm_error(404, "NOT_FOUND", fcm_detail("UNREGISTERED")), "invalid_token",
         ErrorClass.INVALID_TOKEN, "UNREGISTERED"),
        # seed 003's body for a malformed token
        (fcm_error(400, "INVALID_ARGUMENT", fcm_detail("INVALID_ARGUMENT"),
                   message="The registration token is not a valid FCM registration token"),
         "invalid_token", ErrorClass.INVALID_TOKEN, "INVALID_ARGUMENT"),
        (fcm_error(400, "INVALID_ARGUMENT", {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": "message.android.ttl", "description": "bad"}]}),
         "failed", ErrorClass.MESSAGE_INVALID, "INVALID_ARGUMENT"),
        (fcm_error(403, "PERMISSION_DENIED", fcm_detail("SENDER_ID_MISMATCH")), "failed",
         ErrorClass.AUTH_CONFIG, "SENDER_ID_MISMATCH"),
        (fcm_error(401, "UNAUTHENTICATED", fcm_detail("THIRD_PARTY_AUTH_ERROR")), "failed",
         ErrorClass.AUTH_CONFIG, "THIRD_PARTY_AUTH_ERROR"),
        (fcm_error(500, "INTERNAL", fcm_detail("INTERNAL")), "retry",
         ErrorClass.RETRYABLE, "INTERNAL"),
    ],
)  # fmt: skip
async def test_error_answers_are_classified(
    provider: FCMProvider,
    fcm: FakeFCM,
    answer: Answer,
    outcome: str,
    error_class: ErrorClass,
    reason: str,
) -> None:
    fcm.answers["bad"] = [answer]
    good, bad = await provider.send([job("good"), job("bad")])
    assert good.outcome == "success"
    assert (bad.outcome, bad.error_class, bad.reason, bad.status) == (
        outcome,
        error_class,
        reason,
        answer.status,
    )
    assert bad.detail == answer.body["error"]["message"]


async def test_quota_carries_retry_after(provider: FCMProvider, fcm: FakeFCM) -> None:
    answer = fcm_error(429, "RESOURCE_EXHAUSTED", fcm_detail("QUOTA_EXCEEDED"))
    answer.headers["Retry-After"] = "30"
    fcm.answers["a"] = [answer]
    [result] = await provider.send([job("a")])
    assert isinstance(result.error, ProviderQuotaError)
    assert (result.outcome, result.reason, result.retry_after) == ("retry", "QUOTA_EXCEEDED", 30.0)


async def test_firebase_admin_does_not_retry_503_on_its_own(
    provider: FCMProvider, fcm: FakeFCM
) -> None:
    unavailable = fcm_error(503, "UNAVAILABLE", fcm_detail("UNAVAILABLE"))
    unavailable.headers["Retry-After"] = "5"
    fcm.answers["a"] = [unavailable, Answer(200, {"name": "projects/p/messages/late"})]
    [result] = await provider.send([job("a")])
    # One request, not firebase-admin's default five: the sender owns retries.
    assert len(fcm.sends) == 1
    assert isinstance(result.error, ProviderUnavailableError)
    assert (result.outcome, result.error_class, result.retry_after) == (
        "retry",
        ErrorClass.RETRYABLE,
        5.0,
    )
    [again] = await provider.send([job("a")])
    assert again.provider_message_id == "projects/p/messages/late"


async def test_rejected_access_token_is_refreshed_then_auth_config(
    provider: FCMProvider, fcm: FakeFCM
) -> None:
    await provider.send([job("warm")])
    fcm.accept_tokens = False  # every request gets 401 UNAUTHENTICATED from now on
    [result] = await provider.send([job("a")])
    assert (result.outcome, result.error_class, result.reason) == (
        "failed",
        ErrorClass.AUTH_CONFIG,
        "UNAUTHENTICATED",
    )
    # firebase-admin refreshes and repeats on 401 at most twice: 3 requests, 2 more tokens.
    assert len(fcm.sends) == 1 + 3
    assert len(fcm.token_requests) == 1 + 2


async def test_a_rejected_token_is_refreshed_once_for_a_whole_call(
    provider: FCMProvider, fcm: FakeFCM
) -> None:
    await provider.send([job("warm")])
    fcm.issued.clear()  # the token in use is revoked: 401 until a new one is fetched
    results = await provider.send([job(f"t{n}") for n in range(20)])
    assert {r.outcome for r in results} == {"success"}
    # One refresh serves every request that met the revoked token, not one each.
    assert len(fcm.token_requests) == 1 + 1
    assert len(fcm.sends) == 1 + 20 + 20


async def test_third_party_auth_errors_keep_the_token(provider: FCMProvider, fcm: FakeFCM) -> None:
    # The app's APNs or Web Push credentials failed at FCM: a new token cures nothing.
    fcm.answers["a"] = [fcm_error(401, "UNAUTHENTICATED", fcm_detail("THIRD_PARTY_AUTH_ERROR"))]
    [result] = await provider.send([job("a")])
    assert (result.outcome, result.error_class, result.reason) == (
        "failed",
        ErrorClass.AUTH_CONFIG,
        "THIRD_PARTY_AUTH_ERROR",
    )
    assert (len(fcm.sends), len(fcm.token_requests)) == (1, 1)


async def test_refused_service_account_fails_every_job_as_auth_config(
    provider: FCMProvider, fcm: FakeFCM
) -> None:
    fcm.token_answer = Answer(400, {"error": "invalid_grant", "error_description": "bad key"})
    results = await provider.send([job("a"), job("b")])
    assert [(r.outcome, r.error_class, r.reason) for r in results] == [
        ("failed", ErrorClass.AUTH_CONFIG, "TokenRefresh"),
    ] * 2
    assert fcm.sends == []


async def test_unreachable_endpoint_is_retryable(fcm: FakeFCM) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    provider = FCMProvider(
        FCMCredentials(service_account=fcm.service_account()),
        FCMSettings(endpoint=f"http://127.0.0.1:{closed_port}"),
    )
    try:
        [result] = await provider.send([job("a")])
    finally:
        await provider.aclose()
    assert (result.outcome, result.error_class, result.reason) == (
        "retry",
        ErrorClass.RETRYABLE,
        "ConnectError",
    )


async def test_oversize_and_reserved_keys_fail_without_a_request(
    provider: FCMProvider, fcm: FakeFCM
) -> None:
    big, reserved = await provider.send(
        [job("a", data={"k": "x" * 4096}), job("b", data={"google.x": "1"})]
    )
    assert (big.outcome, big.error_class, big.reason) == (
        "failed",
        ErrorClass.MESSAGE_INVALID,
        "PayloadTooLarge",
    )
    assert (reserved.error_class, reserved.reason) == (
        ErrorClass.MESSAGE_INVALID,
        "ReservedDataKey",
    )
    assert fcm.sends == []
    assert fcm.token_requests == []


def test_credentials_need_a_service_account() -> None:
    with pytest.raises(ValueError, match="service_account"):
        FCMCredentials(service_account={"type": "authorized_user"})
    with pytest.raises(ValueError, match="token_uri"):
        FCMCredentials(
            service_account={
                "type": "service_account",
                "project_id": "p",
                "private_key": "k",
                "client_email": "e",
            }
        )


async def test_a_jobs_quota_scope_is_the_service_accounts_project(
    provider: FCMProvider, fcm: FakeFCM
) -> None:
    assert provider.quota_scope(job()) == fcm.project
    assert FCMProvider.default_quota == 600_000 / 60
    assert FCMProvider.pauses_scope_on_429
