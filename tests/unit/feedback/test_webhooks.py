from __future__ import annotations

import httpx
import pytest

from services.core.events import WebhookCall
from services.feedback import webhooks
from services.feedback.webhooks import WebhookSender


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhooks, "BASE_DELAY", 0.0)


def call(url: str = "http://127.0.0.1:9/hook") -> WebhookCall:
    return WebhookCall(
        webhook_id="w1",
        url=url,
        headers={"X-Key": "k", "Host": "evil.example", "Content-Length": "1"},
        body={"Status": "Success", "Signature": "sig", "FailureReason": None},
    )


def sender(answers: list[int], seen: list[httpx.Request]) -> WebhookSender:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status = answers.pop(0)
        headers = {"Location": "http://169.254.169.254/"} if status == 302 else {}
        return httpx.Response(status, headers=headers)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handle))
    return WebhookSender(client)


async def test_delivers_the_json_body_with_the_callers_headers() -> None:
    seen: list[httpx.Request] = []
    assert await sender([200], seen).deliver(call()) == "delivered"
    (request,) = seen
    assert request.method == "POST"
    assert request.headers["X-Key"] == "k"
    assert request.headers["Host"] == "127.0.0.1:9"
    assert request.headers["Content-Type"] == "application/json"
    assert request.read() == (b'{"Status":"Success","Signature":"sig","FailureReason":null}')


async def test_retries_server_errors_then_gives_up() -> None:
    seen: list[httpx.Request] = []
    assert await sender([503, 500, 429, 502], seen).deliver(call()) == "failed"
    assert len(seen) == webhooks.ATTEMPTS


async def test_retries_until_success() -> None:
    seen: list[httpx.Request] = []
    assert await sender([503, 200], seen).deliver(call()) == "delivered"
    assert len(seen) == 2


async def test_client_errors_are_not_retried_and_redirects_not_followed() -> None:
    for status in (400, 302):
        seen: list[httpx.Request] = []
        assert await sender([status], seen).deliver(call()) == "failed"
        assert len(seen) == 1
