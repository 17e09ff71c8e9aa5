"""The sender's Faust app (app id `pushline-sender`, also its consumer group).

One agent per provider topic. Each pulls jobs in batches and hands them to its provider's
dispatcher, which acknowledges every job once its outcome is on `push.feedback`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import faust

from services.core import topics
from services.core.providers.classify import ProviderName
from services.core.secrets import Vault
from services.core.settings import Settings
from services.core.store.apps import Apps
from services.core.topics import SENDER_APP_ID
from services.core.worker import StreamApp, unacked_batches
from services.sender.dispatch import Dispatcher, RetryPolicy
from services.sender.providers import AppProviders

METRICS_PORT = 9102
# Jobs per provider call, and the longest a job waits for its batch to fill.
BATCH = 500
BATCH_WINDOW = 0.05
PROVIDERS: tuple[ProviderName, ...] = ("fcm", "apns", "webpush")


def create_app(settings: Settings) -> StreamApp:
    """The sender worker, ready to run."""
    app = StreamApp(SENDER_APP_ID, settings, METRICS_PORT)

    @functools.cache
    def providers() -> AppProviders:
        # Built on first use, inside the running worker: the store is connected by then.
        built = AppProviders(settings, Apps(app.db, Vault(settings.master_key)))
        app.close_on_stop(built.aclose)
        return built

    for name in PROVIDERS:
        _add_agent(app, name, providers)
    return app


def _add_agent(app: StreamApp, name: ProviderName, providers: Callable[[], AppProviders]) -> None:
    async def deliver(stream: faust.StreamT[bytes]) -> None:
        policy = RetryPolicy(
            attempts=app.settings.send_attempts, base=app.settings.retry_base_seconds
        )
        dispatcher = Dispatcher(
            name,
            providers(),
            app.publish_soon,
            app.db,
            policy=policy,
            concurrency=app.settings.send_concurrency,
            stopping=lambda: app.should_stop,
        )
        try:
            async for batch in unacked_batches(stream, BATCH, BATCH_WINDOW):
                await dispatcher.dispatch([(e.key, e.value, _acker(stream, e)) for e in batch])
        finally:
            await dispatcher.drain()

    app.agent(app.source(topics.JOB_TOPICS[name]), name=f"deliver_{name}")(deliver)


def _acker(stream: faust.StreamT[bytes], event: faust.EventT[Any]) -> Callable[[], Awaitable[Any]]:
    async def ack() -> None:
        await stream.ack(event)

    return ack
