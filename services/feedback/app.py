"""The feedback's Faust app (app id `pushline-feedback`, also its consumer group).

Feedback is the only writer of device state. It applies registration verdicts, cleanups
and delivery outcomes (counters, invalid devices), makes the webhook calls, and removes
what sends left in the store once it outlived its retention (services.core.store.retention).
"""

from __future__ import annotations

import logging
import uuid
from typing import cast

import faust
import pydantic

from services.core import metrics, topics
from services.core.callbacks import SWEEP_INTERVAL, fire_devices, fire_final, sweep
from services.core.events import (
    CleanupDevices,
    DeliveryOutcome,
    DeliveryOutcomes,
    FanoutCompleted,
    Interaction,
    RegistrationResolved,
    UpdateDevice,
    WebhookCall,
)
from services.core.kafka import decode
from services.core.outages import is_outage
from services.core.settings import Settings
from services.core.store.devices import DevicesRepository
from services.core.store.notifications import NotificationsRepository
from services.core.store.retention import Retention
from services.core.topics import FEEDBACK_APP_ID
from services.core.worker import StreamApp
from services.feedback.deliveries import apply_interactions, apply_outcomes
from services.feedback.registrations import apply_registration, verdict_of_verification
from services.feedback.webhooks import WebhookSender

log = logging.getLogger(__name__)

METRICS_PORT = 9103
# Webhook calls in flight per worker; each waits on a caller's server.
WEBHOOK_CONCURRENCY = 16
# Feedback events applied together: fewer, larger store writes under load, and at most
# BATCH_WINDOW seconds of extra latency when traffic is light.
BATCH = 500
BATCH_WINDOW = 0.2


def create_app(settings: Settings) -> StreamApp:
    """The feedback worker, ready to run."""
    app = StreamApp(FEEDBACK_APP_ID, settings, METRICS_PORT)

    @app.agent(app.source(topics.FEEDBACK))
    async def feedback(stream: faust.StreamT[bytes]) -> None:
        # take_events acknowledges a batch only after the loop body is done with it;
        # the StreamT protocol does not declare it, the Stream class does.
        batches = cast(faust.Stream[bytes], stream).take_events(BATCH, within=BATCH_WINDOW)
        async for batch in batches:
            events = [(event.key, event.value) for event in batch]
            # Every step of a batch is safe to repeat (see `deliveries`).
            await app.until_done(lambda: on_feedback(app, events), "feedback")  # noqa: B023

    @app.agent(app.source(topics.WEBHOOKS), concurrency=WEBHOOK_CONCURRENCY)
    async def webhook_calls(stream: faust.StreamT[bytes]) -> None:
        webhooks = WebhookSender(app.http)
        async for event in stream.events():
            try:
                call = decode(topics.WEBHOOKS, event.value)
            except pydantic.ValidationError as exc:
                await app.dead_letter(topics.WEBHOOKS, event.key, event.value, str(exc))
                continue
            assert isinstance(call, WebhookCall)
            await webhooks.deliver(call)

    # Every worker runs retention; a lease in the store lets one at a time do the work.
    holder = uuid.uuid4().hex

    async def retention() -> None:
        try:
            await Retention(app.db, settings, holder).run()
        except Exception as exc:
            if not is_outage(exc):
                raise
            # Every step is safe to repeat: the next run finishes the work.
            metrics.OUTAGE_RETRIES.labels("retention").inc()
            log.warning("store unavailable; retention waits for its next run")

    app.timer(settings.retention_interval_seconds, name="retention")(retention)

    async def sweep_callbacks() -> None:
        try:
            await sweep(app.db, app.queue_webhook)
        except Exception as exc:
            if not is_outage(exc):
                raise
            # The notes stay: the next sweep makes their calls.
            metrics.OUTAGE_RETRIES.labels("callback_sweep").inc()
            log.warning("store or broker unavailable; the callback sweep waits for its next run")

    app.timer(SWEEP_INTERVAL, name="callback_sweep")(sweep_callbacks)
    return app


async def on_feedback(app: StreamApp, batch: list[tuple[bytes | None, bytes]]) -> None:
    """Apply a batch of feedback events in their order.

    Consecutive delivery outcomes, a provider call's in one message or one per message
    (from a sender before batches), are applied together (bulk writes, one counter update
    per notification); registrations, cleanups and verifications are applied one by one
    between them, in their order. (An invalidation does not depend on that order: it loses
    to a registration made after the provider's answer, whichever arrives first.)

    Then the sends' callbacks: the device events their outcomes report, and the final
    call of each notification the batch may have ended.
    """

    outcomes: list[DeliveryOutcome] = []
    reported: list[DeliveryOutcome] = []
    touched: set[str] = set()
    interactions: list[Interaction] = []
    for key, value in batch:
        try:
            event = decode(topics.FEEDBACK, value)
        except pydantic.ValidationError as exc:
            await app.dead_letter(topics.FEEDBACK, key, value, str(exc))
            continue
        if isinstance(event, DeliveryOutcomes):
            outcomes.extend(event.outcomes)
            continue
        if isinstance(event, DeliveryOutcome) and event.kind == "send":
            outcomes.append(event)
            continue
        if isinstance(event, Interaction):
            interactions.append(event)
            continue
        reported += await apply_outcomes(outcomes, app.db)
        outcomes.clear()
        if isinstance(event, CleanupDevices):
            await DevicesRepository(app.db).clean_up(event)
        elif isinstance(event, UpdateDevice):
            if not await DevicesRepository(app.db).update(event):
                log.info(
                    "device update not applied: no such device, or too many tags",
                    extra={"request_id": event.request_id},
                )
        elif isinstance(event, FanoutCompleted):
            await NotificationsRepository(app.db).fanout_completed(event)
            touched.add(event.notification_id)
        else:
            if isinstance(event, DeliveryOutcome):
                event = verdict_of_verification(event)
            assert isinstance(event, RegistrationResolved)
            call = await apply_registration(event, app.db)
            if call is not None:
                await app.queue_webhook(call)
    reported += await apply_outcomes(outcomes, app.db)
    await apply_interactions(interactions, app.db)
    await fire_devices(app.db, reported, app.queue_webhook)
    touched.update(o.notification_id for o in reported if o.notification_id is not None)
    await fire_final(app.db, sorted(touched), app.queue_webhook)
