"""The APNs adapter over libcurl, against a tiny HTTP/2 + TLS server in the test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.core.credentials import APNSCredentials
from services.core.errors import MessageInvalidError, ProviderAuthError, ProviderQuotaError
from services.core.events import AndroidOptions, Content, Options, PushJob
from services.core.overrides import ApnsHeaders, ApnsOverride, Aps, ApsAlert
from services.core.providers.apns import APNsProvider, APNSSettings, endpoint_for
from services.core.providers.classify import ErrorClass
from services.sandbox.emulators.tls import TLSFiles, certificates
from tests.unit.providers.apns_server import FakeAPNs, start_apns

TOKEN = "a" * 64
OTHER = "b" * 64


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return certificates(tmp_path_factory.mktemp("apns-tls"))


@pytest.fixture(scope="session")
def p8() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def p8_text(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def credentials(key: ec.EllipticCurvePrivateKey, **fields: Any) -> APNSCredentials:
    values: dict[str, Any] = {
        "team_id": "TEAM123456",
        "key_id": "KEY1234567",
        "topic": "com.example.app",
        "private_key": p8_text(key),
        "sandbox": False,
    }
    values.update(fields)
    return APNSCredentials(**values)


@pytest.fixture
async def apns(p8: ec.EllipticCurvePrivateKey, tls: TLSFiles) -> AsyncIterator[FakeAPNs]:
    fake = FakeAPNs(key=p8)
    server = await start_apns(fake, tls)
    try:
        yield fake
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def provider(
    p8: ec.EllipticCurvePrivateKey, tls: TLSFiles, apns: FakeAPNs
) -> AsyncIterator[APNsProvider]:
    settings = APNSSettings(endpoint=f"https://127.0.0.1:{apns.port}", ca_file=tls.ca_file)
    built = APNsProvider(credentials(p8), settings)
    try:
        yield built
    finally:
        await built.aclose()


def job(token: str = TOKEN, **fields: Any) -> PushJob:
    values: dict[str, Any] = {
        "notification_id": "n1",
        "account_id": "acc",
        "app_id": "app",
        "provider": "apns",
        "platform": "ios",
        "token": token,
        "token_hash": "h",
        "notification": Content(title="Hi", body="There"),
    }
    values.update(fields)
    return PushJob(**values)


def test_endpoint_by_sandbox_flag_unless_configured() -> None:
    assert endpoint_for(APNSSettings(endpoint=None), sandbox=False) == ("api.push.apple.com", 443)
    assert endpoint_for(APNSSettings(endpoint=None), sandbox=True) == (
        "api.sandbox.push.apple.com",
        443,
    )
    configured = APNSSettings(endpoint="https://apns.internal:2197")
    assert endpoint_for(configured, sandbox=True) == ("apns.internal", 2197)
    with pytest.raises(ProviderAuthError):
        endpoint_for(APNSSettings(endpoint="http://apns.internal"), sandbox=False)


def test_provider_connects_where_the_endpoint_says(p8: ec.EllipticCurvePrivateKey) -> None:
    sandbox = APNsProvider(credentials(p8, sandbox=True), APNSSettings(endpoint=None))
    assert sandbox.endpoint == ("api.sandbox.push.apple.com", 443)


async def test_alert_is_mapped_signed_and_sent_over_h2(
    provider: APNsProvider, apns: FakeAPNs
) -> None:
    before = int(time.time())
    [result] = await provider.send(
        [
            job(
                notification=Content(title="Hi", body="There", image_url="https://i.example/a"),
                data={"order": "42"},
                options=Options(ttl=600, priority="high", collapse_key="order-42"),
            )
        ]
    )
    assert (result.outcome, result.status) == ("success", 200)
    [received] = apns.received
    assert received.alpn == "h2"
    assert received.body == {
        "order": "42",
        "image_url": "https://i.example/a",
        "aps": {"alert": {"title": "Hi", "body": "There"}, "mutable-content": 1},
    }
    headers = received.headers
    assert headers[":method"] == "POST"
    assert headers[":path"] == f"/3/device/{TOKEN}"
    assert headers[":authority"] == f"127.0.0.1:{apns.port}"
    assert headers["apns-topic"] == "com.example.app"
    assert headers["apns-priority"] == "10"
    assert headers["apns-push-type"] == "alert"
    assert headers["apns-collapse-id"] == "order-42"
    assert before + 600 <= int(headers["apns-expiration"]) <= int(time.time()) + 600
    assert result.provider_message_id == headers["apns-id"]
    assert received.jwt_header is not None
    assert (received.jwt_header["alg"], received.jwt_header["kid"]) == ("ES256", "KEY1234567")
    assert received.jwt_claims is not None
    assert received.jwt_claims["iss"] == "TEAM123456"


async def test_data_only_is_a_background_push_at_priority_5(
    provider: APNsProvider, apns: FakeAPNs
) -> None:
    await provider.send([job(notification=Content(), data={"sync": "1"})])
    [received] = apns.received
    assert received.body == {"sync": "1", "aps": {"content-available": 1}}
    assert received.headers["apns-push-type"] == "background"
    assert received.headers["apns-priority"] == "5"
    assert "apns-expiration" not in received.headers
    assert "apns-collapse-id" not in received.headers


async def test_shown_options_are_aps_keys(provider: APNsProvider, apns: FakeAPNs) -> None:
    options = Options(
        badge=3,
        sound="chime.caf",
        thread_id="order-42",
        category="ORDER",
        interruption_level="time-sensitive",
        mutable_content=True,
        android=AndroidOptions(channel_id="orders"),
    )
    await provider.send([job(notification=Content(title="Hi"), options=options)])
    [received] = apns.received
    assert received.body == {
        "aps": {
            "alert": {"title": "Hi"},
            "badge": 3,
            "sound": "chime.caf",
            "thread-id": "order-42",
            "category": "ORDER",
            "interruption-level": "time-sensitive",
            "mutable-content": 1,
        }
    }
    assert received.headers["apns-push-type"] == "alert"


async def test_click_url_image_and_localisation_keys(
    provider: APNsProvider, apns: FakeAPNs
) -> None:
    options = Options(
        click_url="shop://orders/42",
        tag="not-for-apns",
        title_loc_key="ORDER_TITLE",
        title_loc_args=("42",),
        body_loc_key="ORDER_BODY",
        body_loc_args=("Ana", "tomorrow"),
    )
    content = Content(title="Order 42", body="Shipped", image_url="https://i.example/a.png")
    await provider.send([job(notification=content, data={"order": "42"}, options=options)])
    [received] = apns.received
    assert received.body == {
        "order": "42",
        "image_url": "https://i.example/a.png",
        "click_url": "shop://orders/42",
        "aps": {
            "alert": {
                "title": "Order 42",
                "body": "Shipped",
                "title-loc-key": "ORDER_TITLE",
                "title-loc-args": ["42"],
                "loc-key": "ORDER_BODY",
                "loc-args": ["Ana", "tomorrow"],
            },
            "mutable-content": 1,
        },
    }


async def test_the_apns_override_is_merged_last(provider: APNsProvider, apns: FakeAPNs) -> None:
    options = Options(
        priority="high",
        ttl=60,
        collapse_key="mine",
        sound="default",
        apns=ApnsOverride(
            headers=ApnsHeaders(apns_priority="5", apns_expiration="0", apns_collapse_id="theirs"),
            aps=Aps(
                sound="bell.caf",
                relevance_score=0.5,
                alert=ApsAlert(subtitle="For you", loc_key="OVERRIDDEN"),
            ),
            custom={"campaign": "spring"},
        ),
    )
    await provider.send([job(notification=Content(title="Hi"), options=options)])
    [received] = apns.received
    assert received.body == {
        "campaign": "spring",
        "aps": {
            "alert": {"title": "Hi", "subtitle": "For you", "loc-key": "OVERRIDDEN"},
            "sound": "bell.caf",
            "relevance-score": 0.5,
        },
    }
    headers = received.headers
    assert (headers["apns-priority"], headers["apns-expiration"]) == ("5", "0")
    assert (headers["apns-collapse-id"], headers["apns-push-type"]) == ("theirs", "alert")


def test_click_url_and_override_keys_are_kept_from_data() -> None:
    with pytest.raises(MessageInvalidError, match="click_url with a click_url"):
        APNsProvider.document(
            Content(title="Hi"), {"click_url": "x"}, Options(click_url="https://a.example/")
        )
    # Without a click_url the key is the caller's.
    document = APNsProvider.document(Content(title="Hi"), {"click_url": "x"}, Options())
    assert document["click_url"] == "x"
    with pytest.raises(ValueError, match="custom keys go beside aps"):
        ApnsOverride(custom={"aps": "x"})


async def test_content_available_is_a_background_push(
    provider: APNsProvider, apns: FakeAPNs
) -> None:
    options = Options(content_available=True, priority="high")
    await provider.send([job(notification=Content(), data={"sync": "1"}, options=options)])
    [received] = apns.received
    assert received.body == {"sync": "1", "aps": {"content-available": 1}}
    assert received.headers["apns-push-type"] == "background"
    assert received.headers["apns-priority"] == "5"


async def test_error_answers_are_classified_and_410_keeps_its_timestamp(
    provider: APNsProvider, apns: FakeAPNs
) -> None:
    gone_at = 1_795_000_000_123
    tokens: dict[str, tuple[int, dict[str, Any]]] = {
        "1" * 64: (400, {"reason": "BadDeviceToken"}),
        "2" * 64: (410, {"reason": "Unregistered", "timestamp": gone_at}),
        "3" * 64: (429, {"reason": "TooManyRequests"}),
        "4" * 64: (403, {"reason": "InvalidProviderToken"}),
        "5" * 64: (413, {"reason": "PayloadTooLarge"}),
        "6" * 64: (503, {"reason": "ServiceUnavailable"}),
    }
    apns.answers.update(tokens)
    results = await provider.send([job(OTHER), *(job(token) for token in tokens)])
    assert [(r.outcome, r.error_class, r.reason, r.status) for r in results] == [
        ("success", None, None, 200),
        ("invalid_token", ErrorClass.INVALID_TOKEN, "BadDeviceToken", 400),
        ("invalid_token", ErrorClass.INVALID_TOKEN, "Unregistered", 410),
        ("retry", ErrorClass.QUOTA, "TooManyRequests", 429),
        ("failed", ErrorClass.AUTH_CONFIG, "InvalidProviderToken", 403),
        ("failed", ErrorClass.MESSAGE_INVALID, "PayloadTooLarge", 413),
        ("retry", ErrorClass.RETRYABLE, "ServiceUnavailable", 503),
    ]
    assert results[2].invalid_since == datetime.fromtimestamp(gone_at / 1000, UTC)
    assert results[1].invalid_since is None
    assert isinstance(results[3].error, ProviderQuotaError)
    assert results[3].retry_after is not None


async def test_malformed_tokens_and_verify_jobs_send_nothing(
    provider: APNsProvider, apns: FakeAPNs
) -> None:
    malformed, verified, oversize = await provider.send(
        [
            job("not a token"),
            job(kind="verify", registration_id="r1", notification_id=None),
            job(data={"k": "x" * 4096}),
        ]
    )
    assert (malformed.outcome, malformed.reason) == ("invalid_token", "BadDeviceToken")
    assert verified.outcome == "success"
    assert (oversize.outcome, oversize.reason) == ("failed", "PayloadTooLarge")
    assert apns.received == []


async def test_untrusted_server_is_a_retryable_failure(
    p8: ec.EllipticCurvePrivateKey, apns: FakeAPNs
) -> None:
    # Without PUSHLINE_APNS_CA_FILE the test CA is not trusted: no connection, no request.
    provider = APNsProvider(
        credentials(p8), APNSSettings(endpoint=f"https://127.0.0.1:{apns.port}")
    )
    try:
        [result] = await provider.send([job()])
    finally:
        await provider.aclose()
    assert (result.outcome, result.error_class, result.reason) == (
        "retry",
        ErrorClass.RETRYABLE,
        "UntrustedServer",
    )
    assert apns.received == []
    assert not result.maybe_delivered


def test_key_must_be_a_p256_p8(tmp_path: Path) -> None:
    good = credentials(ec.generate_private_key(ec.SECP256R1())).model_dump()
    for key in ("garbage", p8_text(ec.generate_private_key(ec.SECP384R1()))):
        with pytest.raises(ProviderAuthError) as caught:
            APNsProvider.from_credentials({**good, "private_key": key}, APNSSettings())
        assert caught.value.reason == "MalformedCredentials"
        assert caught.value.__cause__ is not None
        assert key not in str(caught.value)


async def test_a_call_shares_one_connection_and_one_provider_token(
    provider: APNsProvider, apns: FakeAPNs
) -> None:
    results = await provider.send([job(f"{index:064x}") for index in range(50)])
    await provider.send([job()])
    assert [r.outcome for r in results] == ["success"] * 50
    assert apns.connections == 1
    tokens = {r.headers["authorization"] for r in apns.received}
    assert len(tokens) == 1


async def test_an_unanswered_send_times_out_and_the_client_stays_usable(
    provider: APNsProvider, apns: FakeAPNs
) -> None:
    apns.silent.add(OTHER)
    provider.TIMEOUT = 0.5  # type: ignore[misc]
    [unanswered, answered] = await provider.send([job(OTHER), job()])
    assert (unanswered.outcome, unanswered.reason) == ("retry", "Timeout")
    # The server had the request: a retry may reach the device a second time.
    assert unanswered.maybe_delivered
    assert answered.outcome == "success"


async def test_a_cancelled_send_leaves_the_client_usable(
    provider: APNsProvider, apns: FakeAPNs
) -> None:
    apns.silent.add(OTHER)
    waiting = asyncio.ensure_future(provider.send([job(OTHER)]))
    for _ in range(500):
        if any(r.headers[":path"].endswith(OTHER) for r in apns.received):
            break
        await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    [result] = await provider.send([job()])
    assert result.outcome == "success"


def test_a_jobs_quota_scope_is_the_keys_team(p8: ec.EllipticCurvePrivateKey) -> None:
    provider = APNsProvider(credentials(p8, team_id="ABCDE12345"), APNSSettings(endpoint=None))
    assert provider.quota_scope(job()) == "ABCDE12345"
    # Its 429s are one device's or the key's, and no quota is published.
    assert not APNsProvider.pauses_scope_on_429
    assert APNsProvider.default_quota is None
