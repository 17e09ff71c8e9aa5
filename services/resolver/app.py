"""The resolver's Faust app (app id `pushline-resolver`, also its consumer group)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, cast

import faust
import pydantic

from services.core import metrics, topics
from services.core.acks import OrderedAcks
from services.core.callbacks import fire_final
from services.core.events import (
    CancelSend,
    CleanupDevices,
    FanoutCompleted,
    PushJob,
    RegisterDevice,
    SendRequest,
    UpdateDevice,
    utc_now,
)
from services.core.kafka import decode
from services.core.secrets import Vault
from services.core.settings import Settings
from services.core.store.apps import Apps
from services.core.store.notifications import NotificationsRepository
from services.core.tokens import hash_token
from services.core.topics import RESOLVER_APP_ID, device_key, notification_key
from services.core.worker import StreamApp
from services.resolver.fanout import expand
from services.resolver.pacing import Pacer, Requests
from services.resolver.progress import Progress
from services.resolver.registrations import device_cleanups, resolve_registration
from services.resolver.schedules import DUE_INTERVAL, DueSends, hold

METRICS_PORT = 9101
# Jobs handed to the producer before waiting for Kafka to have them all.
PUBLISH_WINDOW = 1000

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> StreamApp:
    """The resolver worker, ready to run."""
    # The send requests run in tasks of their own (`Requests`): a rebalance or a stop cuts
    # them short instead of waiting for them, and their next owner resumes them.
    app = StreamApp(RESOLVER_APP_ID, settings, METRICS_PORT, wait_empty=False)
    running: list[Requests] = []

    @app.on_partitions_revoked.connect
    async def stop_requests(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Unacknowledged, a request cut short is read again by its partition's next owner
        # (this worker or another), which resumes it from its checkpoint; left running, the
        # old and the new owner would fan it out at once.
        await asyncio.gather(*(requests.stop() for requests in running))

    @app.agent(app.source(topics.REGISTRATIONS))
    async def registrations(stream: faust.StreamT[bytes]) -> None:
        # The resolver reads apps and never opens their credentials, so it holds no key.
        apps = Apps(app.db, Vault(None))
        async for event in stream.events():
            await app.until_done(
                lambda: on_registration(app, apps, event.key, event.value),  # noqa: B023 - awaited here
                "registration",
            )

    @app.agent(app.source(topics.SEND_REQUESTS))
    async def send_requests(stream: faust.StreamT[bytes]) -> None:
        # Each request in a task of its own (services.resolver.pacing), acknowledged in
        # offset order once done: a request cut short is read again and resumed.
        pacer = Pacer(app.db, app.settings)
        acks = OrderedAcks(app, stream)
        requests = Requests(app.crash, lambda: app.should_stop)
        running.append(requests)
        # Stopped before the app closes the store: a request still running then is cut
        # short (and read again by the next owner), not left to find the store gone.
        app.close_on_stop(requests.stop)
        try:
            # The StreamT protocol lacks `noack`; the Stream class every agent gets has it.
            async for event in cast(faust.Stream[bytes], stream).noack().events():
                key, value = event.key, event.value

                async def resolve(key: bytes | None = key, value: bytes = value) -> None:
                    # Resolving again from the start is safe: jobs already produced end once.
                    await app.until_done(
                        lambda: on_send_request(app, key, value, pacer), "send_request"
                    )

                await requests.start(key, resolve, acks.acker(event))
        finally:
            running.remove(requests)
            await requests.stop()

    due_sends = DueSends(lambda: app.db, app.publish)
    app.timer(DUE_INTERVAL, name="due-sends")(due_sends.tick)
    return app


async def on_registration(app: StreamApp, apps: Apps, key: bytes | None, value: bytes) -> None:
    """Route one registration command: checked registrations, cleanups (one per device)
    and updates go to feedback, verifications to their provider's job topic; unreadable
    ones to the DLQ."""
    try:
        command = decode(topics.REGISTRATIONS, value)
    except pydantic.ValidationError as exc:
        await app.dead_letter(topics.REGISTRATIONS, key, value, str(exc))
        return
    if isinstance(command, CleanupDevices):
        published = [
            await app.publish_soon(topics.FEEDBACK, _cleanup_key(cleanup, key), cleanup)
            async for cleanup in device_cleanups(command, app.db)
        ]
        await asyncio.gather(*published)
        return
    if isinstance(command, UpdateDevice):
        # Nothing to check: feedback applies it to the device, if the device is there.
        update_key = device_key(command.app_id, hash_token(command.token))
        await app.publish(topics.FEEDBACK, update_key, command)
        return
    assert isinstance(command, RegisterDevice)
    result = await resolve_registration(
        command, apps, app.db, allow_private=app.settings.webhook_allow_private
    )
    out_key = device_key(command.app_id, result.token_hash)
    if isinstance(result, PushJob):
        await app.publish(topics.topic_of(result), out_key, result)
    else:
        await app.publish(topics.FEEDBACK, out_key, result)


def _cleanup_key(cleanup: CleanupDevices, key: bytes | None) -> bytes:
    """A device's cleanup is keyed by the device; one naming no token keeps its key."""
    if cleanup.token is None:
        return key or b""
    return device_key(cleanup.app_id, hash_token(cleanup.token))


async def on_send_request(app: StreamApp, key: bytes | None, value: bytes, pacer: Pacer) -> None:
    """Fan a send request out into jobs, at most its account's notifications per second
    (`pacer`), then tell feedback how many there are; hold one whose `send_at` is ahead;
    apply a cancel."""
    try:
        request = decode(topics.SEND_REQUESTS, value)
    except pydantic.ValidationError as exc:
        await app.dead_letter(topics.SEND_REQUESTS, key, value, str(exc))
        return
    notifications = NotificationsRepository(app.db)
    if isinstance(request, CancelSend):
        found = await notifications.cancel(request.notification_id, request.account_id)
        if found is not None:
            await fire_final(app.db, [request.notification_id], app.queue_webhook)
        log.info(
            "cancel applied",
            extra={
                "notification_id": request.notification_id,
                "state": None if found is None else found["state"],
            },
        )
        return
    assert isinstance(request, SendRequest)
    if request.scheduled(utc_now()):
        await hold(request, app.db)
        return
    if not await notifications.start_resolving(request):
        log.info(
            "send request already resolved", extra={"notification_id": request.notification_id}
        )
        return
    # Only a `to.all` or `to.filters` fan-out reads in an order it can resume in; any other
    # starts over.
    positioned = request.positioned
    progress = Progress.resumed(
        await notifications.checkpoint(request.notification_id) if positioned else None
    )
    if progress.after is not None:
        log.info(
            "send request resumed",
            extra={"notification_id": request.notification_id, "jobs": progress.jobs},
        )
    in_flight: list[Awaitable[object]] = []
    rate = await pacer.rate(request.account_id)
    async for job in expand(request, app.db, progress.after):
        progress.count(job, positioned=positioned)
        if not request.options.dry_run:
            await pacer.job(request.account_id, rate)
            key_ = device_key(job.app_id, job.token_hash)
            in_flight.append(await app.publish_soon(topics.topic_of(job), key_, job))
        if len(in_flight) >= PUBLISH_WINDOW or progress.due():
            await asyncio.gather(*in_flight)
            in_flight.clear()
            if progress.due():
                await notifications.save_checkpoint(request.notification_id, progress.checkpoint())
            # Between windows: a cancelled send stops producing jobs (the sender drops
            # those already produced), and is counted as far as it came.
            if await notifications.state(request.notification_id) == "cancelled":
                log.info(
                    "fan-out stopped: the send was cancelled",
                    extra={"notification_id": request.notification_id, "jobs": progress.jobs},
                )
                break
    await asyncio.gather(*in_flight)
    for provider, count in progress.by_provider.items():
        metrics.JOBS_RESOLVED.labels(provider).inc(count)
    done = FanoutCompleted(
        notification_id=request.notification_id,
        jobs=progress.jobs,
        by_platform=dict(progress.by_platform),
        by_provider=dict(progress.by_provider),
        dry_run=request.options.dry_run,
    )
    await app.publish(topics.FEEDBACK, notification_key(request.notification_id), done)
    log.info(
        "send request resolved",
        extra={"notification_id": request.notification_id, "jobs": done.jobs},
    )
