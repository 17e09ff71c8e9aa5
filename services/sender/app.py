"""The sender's Faust app (app id `pushline-sender`, also its consumer group).

One agent per registered provider's job topic, two per provider: its transactional and
its bulk lane. Each pulls jobs in batches and hands them to its dispatcher, which
acknowledges every job once its outcome is on `push.feedback`. A provider's two
dispatchers share its `PUSHLINE_SEND_CONCURRENCY` slots, transactional batches first
(`LaneSlots`): a bulk agent that waits for a slot stops pulling, and Faust pauses its
partitions once their buffer is full, while the transactional topic keeps flowing.

A rebalance does not wait for the batches in flight to finish (up to
`PUSHLINE_SEND_CONCURRENCY` x 500 jobs per provider, tens of seconds with a slow provider,
while the whole group stands still): when partitions are revoked the dispatchers stop
starting provider calls for the jobs taken before, wait for the calls on the wire to be
marked, and leave the rest unacknowledged to the partitions' next owner, which finds the
marked sends ended. Finishing those batches after the revocation instead made the old and
the new owner send the same jobs at once.

A timer checks the apps' provider credentials again every
PUSHLINE_CREDENTIALS_CHECK_INTERVAL (services.core.credential_checks): the sender talks to
the providers, with their settings, and is the process that needs the credentials to work.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Callable
from typing import Any

import faust

from services.core import metrics, topics
from services.core.acks import OrderedAcks
from services.core.credential_checks import PeriodicChecks, tick
from services.core.events import PriorityLane
from services.core.fields import ProviderName
from services.core.outages import is_outage
from services.core.providers import registry
from services.core.secrets import Vault
from services.core.settings import Settings
from services.core.store.apps import Apps
from services.core.topics import SENDER_APP_ID
from services.core.worker import StreamApp, unacked_batches
from services.sender.delivery import RetryPolicy
from services.sender.dispatch import Dispatcher
from services.sender.governor import Governor
from services.sender.lanes import LaneSlots
from services.sender.providers import AppProviders

log = logging.getLogger(__name__)

METRICS_PORT = 9102
# Jobs per provider call, and the longest a job waits for its batch to fill.
BATCH = 500
BATCH_WINDOW = 0.05


def create_app(settings: Settings) -> StreamApp:
    """The sender worker, ready to run."""
    app = StreamApp(SENDER_APP_ID, settings, METRICS_PORT, wait_empty=False)
    dispatchers: list[Dispatcher] = []

    @app.on_partitions_revoked.connect
    async def stop_stale_sends(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        generation = app.consumer_generation_id
        await asyncio.gather(*(d.revoke(generation) for d in dispatchers))

    @functools.cache
    def providers() -> AppProviders:
        # Built on first use, inside the running worker: the store is connected by then.
        apps = Apps(app.db, Vault(settings.master_key))
        built = AppProviders(settings, apps, Governor(app.db, settings.provider_quotas))
        app.close_on_stop(built.aclose)
        return built

    for name in registry.names():
        slots = LaneSlots(settings.send_concurrency, settings.send_transactional_reserve)
        for lane, lane_topics in topics.LANE_TOPICS.items():
            _add_agent(app, name, lane, lane_topics[name], slots, providers, dispatchers)

    # Every sender runs the checks; a lease in the store lets one at a time make them.
    holder = uuid.uuid4().hex

    @functools.cache
    def checks() -> PeriodicChecks:
        return PeriodicChecks(Apps(app.db, Vault(settings.master_key)), settings, holder)

    async def check_credentials() -> None:
        try:
            await checks().run()
        except Exception as exc:
            if not is_outage(exc):
                raise
            # The next run checks what this one could not.
            metrics.OUTAGE_RETRIES.labels("credential_checks").inc()
            log.warning("store unavailable; credential checks wait for their next run")

    app.timer(tick(settings), name="credential_checks")(check_credentials)
    return app


def _add_agent(
    app: StreamApp,
    name: ProviderName,
    lane: PriorityLane,
    topic: topics.Topic,
    slots: LaneSlots,
    providers: Callable[[], AppProviders],
    dispatchers: list[Dispatcher],
) -> None:
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
            lane=lane,
            slots=slots,
        )
        dispatchers.append(dispatcher)
        acks = OrderedAcks(app, stream)
        try:
            async for batch in unacked_batches(stream, BATCH, BATCH_WINDOW):
                # Faust hands over only events of the current generation: stamped now,
                # before any await, the batch knows the rebalance it belongs to.
                generation = app.consumer_generation_id
                await dispatcher.dispatch(
                    [(e.key, e.value, acks.acker(e)) for e in batch], generation
                )
        finally:
            dispatchers.remove(dispatcher)
            await dispatcher.drain()

    # The transactional agent keeps the name it had before lanes.
    agent_name = f"deliver_{name}" if lane == "transactional" else f"deliver_{name}_{lane}"
    app.agent(app.source(topic), name=agent_name)(deliver)
