"""What the services' logs show of a provider call and a webhook: no device identifier, no
credential, and no line per request from the HTTP libraries."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from aiohttp import web

from services.core import logging as logs
from services.core import outbound
from services.core.credentials import FCMCredentials, WebPushCredentials
from services.core.events import PushJob, WebhookCall, WebPushSubscription
from services.core.providers.fcm import FCMProvider, FCMSettings
from services.core.providers.webpush import WebPushProvider, WebPushSettings
from services.feedback.webhooks import WebhookSender
from services.sandbox.emulators import EmulatorThread, FCMEmulator, WebPushEmulator
from tests.unit.providers.keys import vapid_pair


@pytest.fixture
def service_logs() -> Iterator[io.StringIO]:
    """The services' logging at its most verbose (DEBUG), writing its JSON lines here
    instead of stderr; the test process's logging is put back afterwards."""
    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    levels = {
        name: logger.level
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    logs.configure("DEBUG", "pushline-test")
    written = io.StringIO()
    for handler in root.handlers:
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(written)
    try:
        yield written
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers
        for name, logger in logging.root.manager.loggerDict.items():
            if isinstance(logger, logging.Logger):
                logger.setLevel(levels.get(name, logging.NOTSET))


@dataclass
class Hook:
    """A webhook receiver on loopback."""

    port: int = 0
    hits: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        return web.Response(status=404 if request.path == "/down" else 200)


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    receiver = Hook()
    app = web.Application()
    app.router.add_post("/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    receiver.port = runner.addresses[0][1]
    yield receiver
    await runner.cleanup()


@dataclass
class Providers:
    fcm: FCMEmulator
    webpush: WebPushEmulator


@pytest.fixture
def emulators() -> Iterator[Providers]:
    running = Providers(FCMEmulator(), WebPushEmulator())
    with EmulatorThread(running.fcm, running.webpush):
        yield running


def job(provider: Literal["fcm", "webpush"], token: str, **fields: Any) -> PushJob:
    platform: Literal["android", "web"] = "android" if provider == "fcm" else "web"
    return PushJob(
        account_id="acc",
        app_id="app",
        provider=provider,
        platform=platform,
        token=token,
        token_hash="h",
        **fields,
    )


async def test_provider_calls_and_webhooks_log_no_device_and_no_credentials(
    service_logs: io.StringIO, hook: Hook, emulators: Providers
) -> None:
    vapid = vapid_pair()
    subscription = WebPushSubscription.model_validate(emulators.webpush.subscribe())
    webpush = WebPushProvider(
        WebPushCredentials(
            vapid_private_key=vapid.private,
            vapid_public_key=vapid.public,
            subject="mailto:ops@pushline.example",
        ),
        WebPushSettings(allow_private=True),
    )
    fcm = FCMProvider(
        FCMCredentials(service_account=emulators.fcm.service_account()),
        FCMSettings(endpoint=emulators.fcm.url),
    )
    fcm_token = "fcm-device-token-" + "x" * 40
    try:
        [pushed] = await webpush.send(
            [job("webpush", subscription.endpoint, subscription=subscription)]
        )
        [sent] = await fcm.send([job("fcm", fcm_token)])
    finally:
        await webpush.aclose()
        await fcm.aclose()
    assert (pushed.outcome, sent.outcome) == ("success", "success")
    async with outbound.client(allow_private=True, timeout=5.0) as client:
        webhooks = WebhookSender(client)
        for number, path in enumerate(("/status", "/down")):
            url = f"http://ops:hunter2-secret@127.0.0.1:{hook.port}{path}?token=q-secret"
            call = WebhookCall(webhook_id=f"w{number}", url=url, body={"Status": "Success"})
            await webhooks.deliver(call)
    assert hook.hits == ["/status", "/down"]

    logged = [json.loads(line) for line in service_logs.getvalue().splitlines()]
    text = json.dumps(logged)
    device = subscription.endpoint.split("://", 1)[1].split("/", 1)[1]
    for secret in (device, fcm_token, "hunter2-secret", "ops:", "q-secret", "/status", "/down"):
        assert secret not in text
    # No line per request from the libraries; Pushline's own lines name the target by its
    # scheme and host, and say why a call did not deliver.
    assert {line["logger"] for line in logged} <= {"asyncio", "services.feedback.webhooks"}
    finished = [line for line in logged if line["message"] == "webhook finished"]
    assert [(line["target"], line["outcome"], line["why"]) for line in finished] == [
        ("http://127.0.0.1", "delivered", None),
        ("http://127.0.0.1", "failed", "HTTP 404"),
    ]


@pytest.mark.parametrize("headers", [{"X Auth": "secret"}, {"X-Auth": "caf\u00e9"}])
async def test_a_webhook_whose_headers_http_cannot_carry_fails_at_once_saying_why(
    service_logs: io.StringIO, hook: Hook, headers: dict[str, str]
) -> None:
    url = f"http://127.0.0.1:{hook.port}/status"
    call = WebhookCall(webhook_id="w1", url=url, headers=headers, body={"Status": "Success"})
    async with outbound.client(allow_private=True, timeout=5.0) as client:
        assert await WebhookSender(client).deliver(call) == "failed"
    assert hook.hits == []
    logged = [json.loads(line) for line in service_logs.getvalue().splitlines()]
    [line] = [line for line in logged if line["message"] == "webhook finished"]
    assert (line["level"], line["outcome"], line["why"]) == (
        "WARNING",
        "failed",
        "the callback headers are not valid HTTP header fields",
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pass@hooks.example:8443/a/b?c=d#e", "https://hooks.example"),
        ("https://fcm.googleapis.com/fcm/send/dXNlcg", "https://fcm.googleapis.com"),
        ("http://[::1]:9443/push/abc", "http://[::1]"),
    ],
)
def test_a_url_is_logged_by_scheme_and_host(url: str, shown: str) -> None:
    assert logs.url_origin(url) == shown
