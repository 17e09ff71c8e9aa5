"""The resolver's Faust app (app id `pushline-resolver`, also its consumer group)."""

from __future__ import annotations

import faust
import pydantic

from services.core import topics
from services.core.events import CleanupDevices, PushJob, RegisterDevice
from services.core.kafka import decode
from services.core.settings import Settings
from services.core.topics import RESOLVER_APP_ID, device_key
from services.core.worker import StreamApp
from services.resolver.registrations import resolve_registration

METRICS_PORT = 9101


def create_app(settings: Settings) -> StreamApp:
    """The resolver worker, ready to run."""
    app = StreamApp(RESOLVER_APP_ID, settings, METRICS_PORT)

    @app.agent(app.source(topics.REGISTRATIONS))
    async def registrations(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            await on_registration(app, event.key, event.value)

    return app


async def on_registration(app: StreamApp, key: bytes | None, value: bytes) -> None:
    """Route one registration command: checked registrations and cleanups go to feedback,
    verifications to their provider's job topic; unreadable ones to the DLQ."""
    try:
        command = decode(topics.REGISTRATIONS, value)
    except pydantic.ValidationError as exc:
        await app.dead_letter(topics.REGISTRATIONS, key, value, str(exc))
        return
    if isinstance(command, CleanupDevices):
        await app.publish(topics.FEEDBACK, key or b"", command)
        return
    assert isinstance(command, RegisterDevice)
    result = await resolve_registration(command, app.db)
    out_key = device_key(command.app_id, result.token_hash)
    if isinstance(result, PushJob):
        await app.publish(topics.JOB_TOPICS[result.provider], out_key, result)
    else:
        await app.publish(topics.FEEDBACK, out_key, result)
