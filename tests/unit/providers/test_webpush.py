"""The Web Push adapter, against a push service on loopback (aiohttp, real HTTP)."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import http_ece
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from multidict import CIMultiDictProxy
from py_vapid import Vapid02

from services.core.credentials import WebPushCredentials
from services.core.errors import ProviderAuthError, ProviderQuotaError, ProviderUnavailableError
from services.core.events import Content, Options, PushJob, WebPushKeys, WebPushSubscription
from services.core.overrides import (
    WebNotificationAction,
    WebPushHeaders,
    WebPushNotification,
    WebPushOverride,
)
from services.core.providers.classify import ErrorClass
from services.core.providers.webpush import VapidCache, WebPushProvider, WebPushSettings
from tests.unit.providers.keys import Subscriber, VapidPair, subscriber, vapid_pair

NO_PRIVATE = WebPushSettings(allow_private=False)
# The push service listens on loopback, which only this setting lets the adapter reach.
LOOPBACK = WebPushSettings(allow_private=True)


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: CIMultiDictProxy[str]
    content: bytes


@dataclass
class PushService:
    """A fake push service: records requests, answers by path (201 with a Location)."""

    base_url: str = ""
    requests: list[Request] = field(default_factory=list)
    # path -> (status, headers, text)
    answers: dict[str, tuple[int, dict[str, str], str]] = field(default_factory=dict)
    connections: set[tuple[str, int]] = field(default_factory=set)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(
            Request(request.method, str(request.url), request.headers, await request.read())
        )
        assert request.transport is not None
        self.connections.add(request.transport.get_extra_info("peername"))
        status, headers, text = self.answers.get(request.path, (201, {"Location": "/m/1"}, ""))
        return web.Response(status=status, headers=headers, text=text)


@pytest.fixture
def vapid() -> VapidPair:
    return vapid_pair()


@pytest.fixture
async def service() -> AsyncIterator[PushService]:
    fake = PushService()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield fake
    await runner.cleanup()


def credentials_of(vapid: VapidPair) -> WebPushCredentials:
    return WebPushCredentials(
        vapid_private_key=vapid.private,
        vapid_public_key=vapid.public,
        subject="mailto:ops@pushline.example",
    )


@pytest.fixture
async def provider(vapid: VapidPair) -> AsyncIterator[WebPushProvider]:
    built = WebPushProvider(credentials_of(vapid), LOOPBACK)
    yield built
    await built.aclose()


def job(sub: Subscriber, endpoint: str, **fields: Any) -> PushJob:
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


def decrypt(request: Request, sub: Subscriber) -> Any:
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
                f"{service.base_url}/s/1",
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
    assert request.url == f"{service.base_url}/s/1"
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
    assert claims["aud"] == service.base_url
    assert claims["sub"] == "mailto:ops@pushline.example"


async def test_click_url_tag_and_the_webpush_override(
    provider: WebPushProvider, service: PushService
) -> None:
    sub = subscriber()
    options = Options(
        ttl=60,
        collapse_key="mine",
        click_url="https://shop.example/orders/42",
        tag="order-42",
        title_loc_key="NOT_FOR_THE_WEB",
        webpush=WebPushOverride(
            headers=WebPushHeaders(ttl=0, urgency="very-low", topic="theirs"),
            notification=WebPushNotification(
                icon="https://shop.example/icon.png",
                require_interaction=True,
                vibrate=(100, 50),
                actions=(WebNotificationAction(action="open", title="Open"),),
            ),
        ),
    )
    content = Content(title="Hi", body="There")
    await provider.send(
        [job(sub, f"{service.base_url}/s/1", notification=content, options=options)]
    )
    [request] = service.requests
    assert decrypt(request, sub) == {
        "notification": {
            "title": "Hi",
            "body": "There",
            "tag": "order-42",
            "data": {"url": "https://shop.example/orders/42"},
            "icon": "https://shop.example/icon.png",
            "requireInteraction": True,
            "vibrate": [100, 50],
            "actions": [{"action": "open", "title": "Open"}],
        }
    }
    headers = request.headers
    assert (headers["TTL"], headers["Urgency"], headers["Topic"]) == ("0", "very-low", "theirs")


async def test_defaults_ttl_four_weeks_urgency_high_no_topic(
    provider: WebPushProvider, service: PushService
) -> None:
    # A collapse key outside RFC 8030's Topic alphabet is not sent as a Topic.
    await provider.send(
        [job(subscriber(), f"{service.base_url}/s/1", options=Options(collapse_key="not a topic!"))]
    )
    headers = service.requests[0].headers
    assert (headers["TTL"], headers["Urgency"]) == ("2419200", "high")
    assert "Topic" not in headers


async def test_vapid_jwt_is_cached_per_origin(
    provider: WebPushProvider, service: PushService
) -> None:
    sub = subscriber()
    other = service.base_url.replace("127.0.0.1", "localhost")
    for endpoint in (f"{service.base_url}/s/1", f"{service.base_url}/s/2", f"{other}/s/3"):
        await provider.send([job(sub, endpoint)])
    first, second, third = (request.headers["Authorization"] for request in service.requests)
    assert first == second
    assert third != first
    assert jwt_claims(third)["aud"] == other


async def test_requests_share_kept_alive_connections(
    provider: WebPushProvider, service: PushService
) -> None:
    sub = subscriber()
    for _ in range(3):
        results = await provider.send([job(sub, f"{service.base_url}/s/{n}") for n in range(4)])
        assert {r.outcome for r in results} == {"success"}
    # 12 requests, at most 4 at a time: the connections of the first call serve the rest.
    assert len(service.requests) == 12
    assert len(service.connections) <= 4


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
    service.answers["/s/1"] = (status, {}, "nope")
    [result] = await provider.send([job(subscriber(), f"{service.base_url}/s/1")])
    assert (result.outcome, result.error_class, result.reason) == (
        outcome,
        error_class,
        str(status),
    )
    assert (result.status, result.detail) == (status, "nope")


async def test_retry_after_is_carried_on_the_typed_error(
    provider: WebPushProvider, service: PushService
) -> None:
    service.answers["/s/1"] = (429, {"Retry-After": "120"}, "")
    service.answers["/s/2"] = (503, {"Retry-After": "7"}, "")
    quota, unavailable = await provider.send(
        [
            job(subscriber(), f"{service.base_url}/s/1"),
            job(subscriber(), f"{service.base_url}/s/2"),
        ]
    )
    assert isinstance(quota.error, ProviderQuotaError)
    assert quota.retry_after == 120.0
    assert isinstance(unavailable.error, ProviderUnavailableError)
    assert unavailable.retry_after == 7.0


async def test_connection_error_is_retryable(provider: WebPushProvider) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    [result] = await provider.send([job(subscriber(), f"http://127.0.0.1:{closed_port}/s/1")])
    assert (result.outcome, result.error_class, result.reason) == (
        "retry",
        ErrorClass.RETRYABLE,
        "ConnectError",
    )
    assert result.retry_after == 1.0
    assert not result.maybe_delivered


async def test_redirects_are_not_followed(provider: WebPushProvider, service: PushService) -> None:
    service.answers["/s/1"] = (307, {"Location": f"{service.base_url}/elsewhere"}, "")
    [result] = await provider.send([job(subscriber(), f"{service.base_url}/s/1")])
    assert result.status == 307
    assert [request.url for request in service.requests] == [f"{service.base_url}/s/1"]


async def test_results_keep_job_order(provider: WebPushProvider, service: PushService) -> None:
    service.answers["/s/2"] = (410, {}, "")
    results = await provider.send(
        [job(subscriber(), f"{service.base_url}/s/{n}") for n in (1, 2, 3)]
    )
    assert [r.outcome for r in results] == ["success", "invalid_token", "success"]


async def test_oversize_payload_fails_without_a_request(
    provider: WebPushProvider, service: PushService
) -> None:
    [result] = await provider.send(
        [job(subscriber(), f"{service.base_url}/s/1", data={"k": "x" * 4000})]
    )
    assert (result.outcome, result.error_class, result.reason) == (
        "failed",
        ErrorClass.MESSAGE_INVALID,
        "PayloadTooLarge",
    )
    assert service.requests == []


async def test_plain_http_endpoints_are_refused(vapid: VapidPair, service: PushService) -> None:
    provider = WebPushProvider(credentials_of(vapid), NO_PRIVATE)
    try:
        [result] = await provider.send([job(subscriber(), "http://push.example.net/s/1")])
    finally:
        await provider.aclose()
    assert (result.outcome, result.reason) == ("invalid_token", "EndpointNotAllowed")
    assert service.requests == []


@pytest.mark.parametrize(
    "endpoint",
    ["https://127.0.0.1:{port}/s/1", "https://10.1.2.3/s", "https://localhost:{port}/s"],
)
async def test_private_endpoints_are_refused_by_its_own_client(
    vapid: VapidPair, service: PushService, endpoint: str
) -> None:
    port = service.base_url.rsplit(":", 1)[1]
    provider = WebPushProvider(credentials_of(vapid), NO_PRIVATE)
    try:
        [result] = await provider.send([job(subscriber(), endpoint.format(port=port))])
    finally:
        await provider.aclose()
    assert (result.outcome, result.reason) == ("invalid_token", "EndpointNotAllowed")
    assert "non-public" in (result.detail or "")
    assert service.requests == []


async def test_bad_subscription_keys_are_an_invalid_token(
    provider: WebPushProvider, service: PushService
) -> None:
    sub = subscriber()
    endpoint = f"{service.base_url}/s/1"
    broken = job(sub, endpoint).model_copy(
        update={
            "subscription": WebPushSubscription(
                endpoint=endpoint, keys=WebPushKeys(p256dh="AAAA", auth=sub.auth_b64)
            )
        }
    )
    [result] = await provider.send([broken])
    assert (result.outcome, result.reason) == ("invalid_token", "BadSubscriptionKeys")
    assert service.requests == []


async def test_verify_jobs_check_locally_without_sending(
    provider: WebPushProvider, service: PushService
) -> None:
    [result] = await provider.send(
        [job(subscriber(), f"{service.base_url}/s/1", kind="verify", notification_id=None)]
    )
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
            WebPushSettings(),
        )
    assert caught.value.reason == "VapidKeyMismatch"
    with pytest.raises(ProviderAuthError) as caught:
        WebPushProvider(
            WebPushCredentials(
                vapid_private_key="not-a-key",
                vapid_public_key=other.public,
                subject="mailto:ops@pushline.example",
            ),
            WebPushSettings(),
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


async def test_an_unanswered_request_may_have_been_delivered(vapid: VapidPair) -> None:
    answered = asyncio.Event()

    async def read_and_stay_silent(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.read(65536)
        await answered.wait()
        writer.close()

    server = await asyncio.start_server(read_and_stay_silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    class Impatient(WebPushProvider):
        TIMEOUT = 0.5

    provider = Impatient(credentials_of(vapid), LOOPBACK)
    try:
        [result] = await provider.send([job(subscriber(), f"http://127.0.0.1:{port}/s/1")])
    finally:
        await provider.aclose()
        answered.set()
        server.close()
        await server.wait_closed()
    assert (result.outcome, result.reason) == ("retry", "Timeout")
    assert result.maybe_delivered


async def test_a_jobs_quota_scope_is_its_push_services_origin(
    provider: WebPushProvider,
) -> None:
    sub = subscriber()
    scope = provider.quota_scope(job(sub, "https://Updates.Push.Services.Mozilla.com/wpush/v2/x"))
    assert scope == "https://updates.push.services.mozilla.com"
    assert provider.quota_scope(job(sub, "http://127.0.0.1:9443/push/abc")) == (
        "http://127.0.0.1:9443"
    )
    assert (
        provider.quota_scope(
            job(sub, "https://a.example").model_copy(update={"subscription": None})
        )
        is None
    )
    assert WebPushProvider.scopes_from_devices
    assert WebPushProvider.default_quota is None
