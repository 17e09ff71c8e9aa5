"""The Web Push adapter, driven through an httpx MockTransport."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import http_ece
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid02

from services.core.credentials import WebPushCredentials
from services.core.errors import ProviderAuthError, ProviderQuotaError, ProviderUnavailableError
from services.core.events import Content, Options, PushJob, WebPushKeys, WebPushSubscription
from services.core.providers.classify import ErrorClass
from services.core.providers.webpush import VapidCache, WebPushProvider
from services.core.settings import Settings
from tests.unit.providers.keys import Subscriber, VapidPair, subscriber, vapid_pair

Handler = Callable[[httpx.Request], httpx.Response]
NO_PRIVATE = Settings(webhook_allow_private=False)


class PushService:
    """A fake push service at the transport: records requests, answers by path."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.answers: dict[str, httpx.Response] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answers.get(request.url.path, httpx.Response(201, headers={"Location": "/m/1"}))


@pytest.fixture
def vapid() -> VapidPair:
    return vapid_pair()


@pytest.fixture
def service() -> PushService:
    return PushService()


@pytest.fixture
async def provider(vapid: VapidPair, service: PushService) -> AsyncIterator[WebPushProvider]:
    credentials = WebPushCredentials(
        vapid_private_key=vapid.private,
        vapid_public_key=vapid.public,
        subject="mailto:ops@pushline.example",
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(service)) as client:
        yield WebPushProvider(credentials, NO_PRIVATE, client=client)


def job(sub: Subscriber, endpoint: str = "https://push.example.net/s/1", **fields: Any) -> PushJob:
    values: dict[str, Any] = {
        "notification_id": "n1",
        "account_id": "acc",
        "app_id": "app",
        "provider": "webpush",
        "platform": "web",
        "token": endpoint,
        "token_hash": "h",
        "subscription": WebPushSubscription(
            endpoint=endpoint, keys=WebPushKeys(p256dh=sub.p256dh, auth=sub.auth_b64)
        ),
        "accepted_at": datetime(2026, 11, 23, tzinfo=UTC),
    }
    values.update(fields)
    return PushJob(**values)


def decrypt(request: httpx.Request, sub: Subscriber) -> Any:
    plain = http_ece.decrypt(
        request.content, private_key=sub.key, auth_secret=sub.auth, version="aes128gcm"
    )
    return json.loads(plain)


def jwt_claims(authorization: str) -> dict[str, Any]:
    token = authorization.split("t=", 1)[1].split(",", 1)[0]
    body = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


async def test_message_is_encrypted_signed_and_mapped(
    provider: WebPushProvider, service: PushService, vapid: VapidPair
) -> None:
    sub = subscriber()
    [result] = await provider.send(
        [
            job(
                sub,
                notification=Content(title="Hi", body="There", image_url="https://i.example/a"),
                data={"order": "42"},
                options=Options(ttl=3600, priority="normal", collapse_key="order-42"),
            )
        ]
    )
    assert result.outcome == "success"
    assert result.provider_message_id == "/m/1"
    assert result.status == 201
    [request] = service.requests
    assert str(request.url) == "https://push.example.net/s/1"
    assert request.method == "POST"
    assert decrypt(request, sub) == {
        "notification": {"title": "Hi", "body": "There", "image": "https://i.example/a"},
        "data": {"order": "42"},
    }
    headers = request.headers
    assert headers["Content-Encoding"] == "aes128gcm"
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["TTL"] == "3600"
    assert headers["Urgency"] == "normal"
    assert headers["Topic"] == "order-42"
    assert "Crypto-Key" not in headers
    assert "Encryption" not in headers
    assert Vapid02.verify(headers["Authorization"])
    assert headers["Authorization"].endswith("k=" + vapid.public)
    claims = jwt_claims(headers["Authorization"])
    assert claims["aud"] == "https://push.example.net"
    assert claims["sub"] == "mailto:ops@pushline.example"


async def test_defaults_ttl_four_weeks_urgency_high_no_topic(
    provider: WebPushProvider, service: PushService
) -> None:
    # A collapse key outside RFC 8030's Topic alphabet is not sent as a Topic.
    await provider.send([job(subscriber(), options=Options(collapse_key="not a topic!"))])
    headers = service.requests[0].headers
    assert (headers["TTL"], headers["Urgency"]) == ("2419200", "high")
    assert "Topic" not in headers


async def test_vapid_jwt_is_cached_per_origin(
    provider: WebPushProvider, service: PushService
) -> None:
    sub = subscriber()
    await provider.send(
        [
            job(sub, "https://push.example.net/s/1"),
            job(sub, "https://push.example.net/s/2"),
            job(sub, "https://other.example.org/s/3"),
        ]
    )
    first, second, third = (request.headers["Authorization"] for request in service.requests)
    assert first == second
    assert third != first
    assert jwt_claims(third)["aud"] == "https://other.example.org"


def test_vapid_cache_lifetime_under_24h_and_renewal() -> None:
    pair = vapid_pair()
    cache = VapidCache(Vapid02.from_string(pair.private), "mailto:a@b.example")
    now = 1_800_000_000.0
    header = cache.header("https://p.example", now)
    exp = jwt_claims(header)["exp"]
    assert 0 < exp - now < 24 * 3600
    # Reused while more than the margin remains, replaced after.
    assert cache.header("https://p.example", exp - VapidCache.MARGIN - 1) == header
    renewed = cache.header("https://p.example", exp - VapidCache.MARGIN)
    assert renewed != header
    assert jwt_claims(renewed)["exp"] > exp


@pytest.mark.parametrize(
    ("status", "outcome", "error_class"),
    [
        (404, "invalid_token", ErrorClass.INVALID_TOKEN),
        (410, "invalid_token", ErrorClass.INVALID_TOKEN),
        (413, "failed", ErrorClass.MESSAGE_INVALID),
        (400, "failed", ErrorClass.MESSAGE_INVALID),
        (403, "failed", ErrorClass.AUTH_CONFIG),
        (429, "retry", ErrorClass.QUOTA),
        (503, "retry", ErrorClass.RETRYABLE),
    ],
)
async def test_error_answers_are_classified(
    provider: WebPushProvider,
    service: PushService,
    status: int,
    outcome: str,
    error_class: ErrorClass,
) -> None:
    service.answers["/s/1"] = httpx.Response(status, text="nope")
    [result] = await provider.send([job(subscriber())])
    assert (result.outcome, result.error_class, result.reason) == (
        outcome,
        error_class,
        str(status),
    )
    assert result.status == status


async def test_retry_after_is_carried_on_the_typed_error(
    provider: WebPushProvider, service: PushService
) -> None:
    service.answers["/s/1"] = httpx.Response(429, headers={"Retry-After": "120"})
    service.answers["/s/2"] = httpx.Response(503, headers={"Retry-After": "7"})
    quota, unavailable = await provider.send(
        [
            job(subscriber(), "https://push.example.net/s/1"),
            job(subscriber(), "https://push.example.net/s/2"),
        ]
    )
    assert isinstance(quota.error, ProviderQuotaError)
    assert quota.retry_after == 120.0
    assert isinstance(unavailable.error, ProviderUnavailableError)
    assert unavailable.retry_after == 7.0


async def test_connection_error_is_retryable(vapid: VapidPair) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    credentials = WebPushCredentials(
        vapid_private_key=vapid.private,
        vapid_public_key=vapid.public,
        subject="mailto:ops@pushline.example",
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        provider = WebPushProvider(
            credentials, Settings(webhook_allow_private=False), client=client
        )
        [result] = await provider.send([job(subscriber())])
    assert (result.outcome, result.error_class, result.reason) == (
        "retry",
        ErrorClass.RETRYABLE,
        "ConnectError",
    )
    assert result.retry_after == 1.0


async def test_results_keep_job_order(provider: WebPushProvider, service: PushService) -> None:
    service.answers["/s/2"] = httpx.Response(410)
    results = await provider.send(
        [job(subscriber(), f"https://push.example.net/s/{n}") for n in (1, 2, 3)]
    )
    assert [r.outcome for r in results] == ["success", "invalid_token", "success"]


async def test_oversize_payload_fails_without_a_request(
    provider: WebPushProvider, service: PushService
) -> None:
    [result] = await provider.send([job(subscriber(), data={"k": "x" * 4000})])
    assert (result.outcome, result.error_class, result.reason) == (
        "failed",
        ErrorClass.MESSAGE_INVALID,
        "PayloadTooLarge",
    )
    assert service.requests == []


async def test_plain_http_endpoints_are_refused(
    provider: WebPushProvider, service: PushService
) -> None:
    [result] = await provider.send([job(subscriber(), "http://push.example.net/s/1")])
    assert (result.outcome, result.reason) == ("invalid_token", "EndpointNotAllowed")
    assert service.requests == []


@pytest.mark.parametrize(
    "endpoint", ["https://127.0.0.1:9/s/1", "https://10.1.2.3/s", "https://localhost:9/s"]
)
async def test_private_endpoints_are_refused_by_its_own_client(
    vapid: VapidPair, endpoint: str
) -> None:
    credentials = WebPushCredentials(
        vapid_private_key=vapid.private,
        vapid_public_key=vapid.public,
        subject="mailto:ops@pushline.example",
    )
    provider = WebPushProvider(credentials, NO_PRIVATE)
    try:
        [result] = await provider.send([job(subscriber(), endpoint)])
    finally:
        await provider.aclose()
    assert (result.outcome, result.reason) == ("invalid_token", "EndpointNotAllowed")
    assert "non-public" in (result.detail or "")


async def test_private_endpoints_allowed_by_setting(vapid: VapidPair, service: PushService) -> None:
    credentials = WebPushCredentials(
        vapid_private_key=vapid.private,
        vapid_public_key=vapid.public,
        subject="mailto:ops@pushline.example",
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(service)) as client:
        provider = WebPushProvider(credentials, Settings(webhook_allow_private=True), client=client)
        [result] = await provider.send([job(subscriber(), "http://127.0.0.1:8099/s/1")])
    assert result.outcome == "success"
    assert str(service.requests[0].url) == "http://127.0.0.1:8099/s/1"


async def test_bad_subscription_keys_are_an_invalid_token(
    provider: WebPushProvider, service: PushService
) -> None:
    sub = subscriber()
    broken = job(sub).model_copy(
        update={
            "subscription": WebPushSubscription(
                endpoint="https://push.example.net/s/1",
                keys=WebPushKeys(p256dh="AAAA", auth=sub.auth_b64),
            )
        }
    )
    [result] = await provider.send([broken])
    assert (result.outcome, result.reason) == ("invalid_token", "BadSubscriptionKeys")
    assert service.requests == []


async def test_verify_jobs_check_locally_without_sending(
    provider: WebPushProvider, service: PushService
) -> None:
    [result] = await provider.send([job(subscriber(), kind="verify", notification_id=None)])
    assert result.outcome == "success"
    assert service.requests == []


def test_mismatched_vapid_keys_are_refused() -> None:
    one, other = vapid_pair(), vapid_pair()
    with pytest.raises(ProviderAuthError) as caught:
        WebPushProvider(
            WebPushCredentials(
                vapid_private_key=one.private,
                vapid_public_key=other.public,
                subject="mailto:ops@pushline.example",
            ),
            Settings(),
        )
    assert caught.value.reason == "VapidKeyMismatch"
    with pytest.raises(ProviderAuthError) as caught:
        WebPushProvider(
            WebPushCredentials(
                vapid_private_key="not-a-key",
                vapid_public_key=other.public,
                subject="mailto:ops@pushline.example",
            ),
            Settings(),
        )
    assert caught.value.reason == "BadVapidKey"
    assert caught.value.__cause__ is not None


def test_vapid_private_key_may_be_pem_or_der() -> None:
    pair = vapid_pair()
    key = Vapid02.from_string(pair.private).private_key
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    der = base64.urlsafe_b64encode(
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    ).decode()
    for private in (pem, der):
        WebPushProvider(
            WebPushCredentials(
                vapid_private_key=private,
                vapid_public_key=pair.public,
                subject="mailto:ops@pushline.example",
            ),
            NO_PRIVATE,
        )
