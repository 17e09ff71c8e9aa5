"""The resolver's Faust app (app id `pushline-resolver`, also its consumer group)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

import faust
import pydantic

from services.core import metrics, topics
from services.core.events import (
    CleanupDevices,
    FanoutCompleted,
    PushJob,
    RegisterDevice,
    SendRequest,
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
from services.resolver.progress import Progress
from services.resolver.registrations import device_cleanups, resolve_registration

METRICS_PORT = 9101
# Jobs handed to the producer before waiting for Kafka to have them all.
PUBLISH_WINDOW = 1000

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> StreamApp:
    """The resolver worker, ready to run."""
    app = StreamApp(RESOLVER_APP_ID, settings, METRICS_PORT)

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
        async for event in stream.events():
            # Resolving again from the start is safe: jobs already produced end once.
            await app.until_done(
                lambda: on_send_request(app, event.key, event.value),  # noqa: B023 - awaited here
                "send_request",
            )

    return app


async def on_registration(app: StreamApp, apps: Apps, key: bytes | None, value: bytes) -> None:
    """Route one registration command: checked registrations and cleanups (one per
    device) go to feedback, verifications to their provider's job topic; unreadable ones
    to the DLQ."""
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
    assert isinstance(command, RegisterDevice)
    result = await resolve_registration(
        command, apps, app.db, allow_private=app.settings.webhook_allow_private
    )
    out_key = device_key(command.app_id, result.token_hash)
    if isinstance(result, PushJob):
        await app.publish(topics.JOB_TOPICS[result.provider], out_key, result)
    else:
        await app.publish(topics.FEEDBACK, out_key, result)


def _cleanup_key(cleanup: CleanupDevices, key: bytes | None) -> bytes:
    """A device's cleanup is keyed by the device; one naming no token keeps its key."""
    if cleanup.token is None:
        return key or b""
    return device_key(cleanup.app_id, hash_token(cleanup.token))


async def on_send_request(app: StreamApp, key: bytes | None, value: bytes) -> None:
    """Fan a send request out into jobs, then tell feedback how many there are."""
    try:
        request = decode(topics.SEND_REQUESTS, value)
    except pydantic.ValidationError as exc:
        await app.dead_letter(topics.SEND_REQUESTS, key, value, str(exc))
        return
    assert isinstance(request, SendRequest)
    notifications = NotificationsRepository(app.db)
    if not await notifications.start_resolving(request):
        log.info(
            "send request already resolved", extra={"notification_id": request.notification_id}
        )
        return
    # Only a `to.all` fan-out reads in an order it can resume in; any other starts over.
    positioned = request.to.all
    progress = Progress.resumed(
        await notifications.checkpoint(request.notification_id) if positioned else None
    )
    if progress.after is not None:
        log.info(
            "send request resumed",
            extra={"notification_id": request.notification_id, "jobs": progress.jobs},
        )
    in_flight: list[Awaitable[object]] = []
    async for job in expand(request, app.db, progress.after):
        progress.count(job, positioned=positioned)
        if not request.options.dry_run:
            key_ = device_key(job.app_id, job.token_hash)
            in_flight.append(await app.publish_soon(topics.JOB_TOPICS[job.provider], key_, job))
        if len(in_flight) >= PUBLISH_WINDOW or progress.due():
            await asyncio.gather(*in_flight)
            in_flight.clear()
            if progress.due():
                await notifications.save_checkpoint(request.notification_id, progress.checkpoint())
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
