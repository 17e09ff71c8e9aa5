"""The feedback's Faust app (app id `pushline-feedback`, also its consumer group).

Feedback is the only writer of device state. It applies registration verdicts and
cleanups, and makes the webhook calls they produce.
"""

from __future__ import annotations

import faust
import pydantic

from services.core import topics
from services.core.events import (
    CleanupDevices,
    DeliveryOutcome,
    RegistrationResolved,
    WebhookCall,
)
from services.core.kafka import decode
from services.core.settings import Settings
from services.core.store.devices import DevicesRepository
from services.core.topics import FEEDBACK_APP_ID
from services.core.worker import StreamApp
from services.feedback.registrations import apply_registration, verdict_of_verification
from services.feedback.webhooks import WebhookSender

METRICS_PORT = 9103
# Webhook calls in flight per worker; each waits on a caller's server.
WEBHOOK_CONCURRENCY = 16


def create_app(settings: Settings) -> StreamApp:
    """The feedback worker, ready to run."""
    app = StreamApp(FEEDBACK_APP_ID, settings, METRICS_PORT)

    @app.agent(app.source(topics.FEEDBACK))
    async def feedback(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            await on_feedback(app, event.key, event.value)

    @app.agent(app.source(topics.WEBHOOKS), concurrency=WEBHOOK_CONCURRENCY)
    async def webhook_calls(stream: faust.StreamT[bytes]) -> None:
        webhooks = WebhookSender(app.http, allow_private=settings.webhook_allow_private)
        async for event in stream.events():
            try:
                call = decode(topics.WEBHOOKS, event.value)
            except pydantic.ValidationError as exc:
                await app.dead_letter(topics.WEBHOOKS, event.key, event.value, str(exc))
                continue
            assert isinstance(call, WebhookCall)
            await webhooks.deliver(call)

    return app


async def on_feedback(app: StreamApp, key: bytes | None, value: bytes) -> None:
    """Apply one feedback event to the store; queue the webhook call it produces."""
    try:
        event = decode(topics.FEEDBACK, value)
    except pydantic.ValidationError as exc:
        await app.dead_letter(topics.FEEDBACK, key, value, str(exc))
        return
    if isinstance(event, CleanupDevices):
        await DevicesRepository(app.db).clean_up(event)
        return
    if isinstance(event, DeliveryOutcome) and event.kind == "verify":
        event = verdict_of_verification(event)
    if isinstance(event, RegistrationResolved):
        call = await apply_registration(event, app.db)
        if call is not None:
            await app.publish(topics.WEBHOOKS, call.webhook_id.encode(), call)
