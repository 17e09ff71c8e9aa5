"""The Faust app every stream worker runs on, with its health and metrics pages.

A worker's web server listens on its metrics port and serves `/metrics`, `/healthz` and
`/readyz`. Before its agents subscribe, the worker creates missing topics and store
indexes, so the services may start in any order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, cast

import faust
import httpx
from aiokafka.errors import KafkaError
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.core import deadletters, eventloop, fetching, kafka, metrics, outages, outbound
from services.core import logging as logs
from services.core.events import WebhookCall
from services.core.health import Readiness
from services.core.lag import LagMeter
from services.core.settings import Settings
from services.core.store import client as store
from services.core.store.indexes import ensure_indexes
from services.core.topics import DLQ, WEBHOOKS, Topic

log = logging.getLogger(__name__)

T = TypeVar("T")

# Seconds between two measurements of the consumer lag (Prometheus scrapes every 15 s).
LAG_INTERVAL = 10.0


class StreamApp(faust.App):
    """A Faust app plus the store handle its agents share.

    The store client is created when the app starts, on the worker's event loop,
    because `AsyncMongoClient` is bound to one loop.
    """

    def __init__(
        self, app_id: str, settings: Settings, metrics_port: int, *, wait_empty: bool = True
    ) -> None:
        """`wait_empty=False`: a rebalance does not wait until every event the agents took
        is acknowledged (the app stops its own stale work when partitions are revoked)."""
        data = settings.state_dir / "faust"
        data.mkdir(parents=True, exist_ok=True)
        super().__init__(
            settings.scoped(app_id),
            broker=[f"kafka://{server}" for server in settings.kafka_servers],
            store="memory://",
            autodiscover=False,
            topic_partitions=settings.topic_partitions,
            topic_allow_declare=False,
            # Faust keeps a data directory per app even with in-memory tables: in the state
            # directory, not wherever the worker was started.
            datadir=str(data / "{conf.name}-data"),
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            # A worker that dies without leaving the group holds its partitions until the
            # session times out: keep that short so a replacement takes over quickly.
            broker_session_timeout=10.0,
            broker_heartbeat_interval=3.0,
            stream_wait_empty=wait_empty,
            web_enabled=True,
            web_bind=settings.metrics_host,
            web_host=settings.metrics_host,
            web_port=settings.metrics_port or metrics_port,
        )
        self.settings = settings
        self._mongo: AsyncMongoClient[store.Document] | None = None
        self._http: httpx.AsyncClient | None = None
        self._readiness: Readiness | None = None
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._lag: LagMeter | None = None
        self._add_pages()
        self.timer(LAG_INTERVAL, name="consumer-lag")(self._measure_lag)

    def _new_transport(self) -> Any:
        return fetching.Transport(self.conf.broker_consumer, self)

    @property
    def db(self) -> AsyncDatabase[store.Document]:
        """The store database; valid once the app has started."""
        if self._mongo is None:
            raise RuntimeError("the app has not started")
        return store.database(self._mongo)

    @property
    def http(self) -> httpx.AsyncClient:
        """The worker's one HTTP client for callers' URLs (connection pools are shared):
        guarded by `services.core.outbound`, so it reaches private addresses only when
        `PUSHLINE_WEBHOOK_ALLOW_PRIVATE` allows, and never follows a redirect.
        """
        if self._http is None:
            raise RuntimeError("the app has not started")
        return self._http

    async def on_start(self) -> None:
        """Create topics and indexes, and connect, before the agents subscribe."""
        await super().on_start()
        eventloop.report()
        await kafka.ensure_topics(self.settings)
        self._mongo = store.connect(self.settings)
        await ensure_indexes(self.db)
        admin = kafka.admin_client(self.settings)
        await admin.start()
        self._readiness = Readiness(self.db, admin)
        lag = LagMeter(self.settings, self.conf.id)
        await lag.start()
        self._lag = lag
        self._http = outbound.client(
            allow_private=self.settings.webhook_allow_private,
            timeout=httpx.Timeout(10.0, connect=5.0),
        )

    def close_on_stop(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Have `closer` awaited when the app stops (for clients an agent built)."""
        self._closers.append(closer)

    async def on_stop(self) -> None:
        """Close the connections `on_start` opened, and whatever was registered."""
        for closer in self._closers:
            await closer()
        self._closers.clear()
        if self._readiness is not None:
            await self._readiness.close()
            self._readiness = None
        if self._lag is not None:
            await self._lag.close()
            self._lag = None
        if self._mongo is not None:
            await self._mongo.close()
            self._mongo = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        await super().on_stop()

    async def until_done(self, work: Callable[[], Awaitable[T]], what: str) -> T:
        """`work()`, tried again through a store or broker outage while the app runs."""
        return await outages.until_done(work, what, lambda: self.should_stop)

    async def publish(self, topic: Topic, key: bytes, message: BaseModel) -> None:
        """Put `message` on `topic` (in this namespace) and wait until Kafka has it.

        Waiting keeps at-least-once: the agent acknowledges its input only afterwards.
        """
        await (await self.publish_soon(topic, key, message))

    async def publish_soon(self, topic: Topic, key: bytes, message: BaseModel) -> Awaitable[object]:
        """Hand `message` to the producer; the returned awaitable ends once Kafka has it.

        For many messages in a row: await the results in windows, not one by one.
        """
        name = self.settings.scoped(topic.name)
        delivered: Awaitable[object] = await self.producer.send(
            name, key, kafka.encode(message), None, None, None
        )
        return delivered

    async def queue_webhook(self, call: WebhookCall) -> None:
        """Put a webhook call on `push.webhooks`, keyed by its id, and wait until Kafka has it."""
        await self.publish(WEBHOOKS, call.webhook_id.encode(), call)

    async def dead_letter(self, topic: Topic, key: bytes | None, value: bytes, error: str) -> None:
        """Park a message this worker cannot process on `push.dlq`, with why."""
        # Only the error's first line: validation errors quote the message, which may hold
        # a device token; the dead letter itself keeps the whole text.
        log.warning(
            "dead-lettering a message",
            extra={"topic": topic.name, "error": error.partition("\n")[0]},
        )
        metrics.DEAD_LETTERS.labels(topic.name).inc()
        await self.publish(DLQ, key or b"", deadletters.letter(topic, key, value, error))

    def source(self, topic: Topic) -> faust.TopicT:
        """`topic` (in this namespace) as an agent's source of raw bytes."""
        return self.topic(
            self.settings.scoped(topic.name), key_serializer="raw", value_serializer="raw"
        )

    async def _measure_lag(self) -> None:
        """Publish the lag of the partitions assigned to this worker right now."""
        if self._lag is None:
            return
        assigned = [(tp.topic, tp.partition) for tp in self.consumer.assignment()]
        try:
            await self._lag.measure(assigned)
        except (KafkaError, TimeoutError):
            # A rebalance or a broker restart; the next round measures again.
            log.debug("could not measure the consumer lag", exc_info=True)

    def _add_pages(self) -> None:
        @self.page("/metrics")
        async def metrics(web: View, request: Request) -> Response:
            # aiohttp refuses a charset inside content_type, so set the header itself.
            return web.bytes(generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

        @self.page("/healthz")
        async def healthz(web: View, request: Request) -> Response:
            return web.json({"status": "ok"})

        @self.page("/readyz")
        async def readyz(web: View, request: Request) -> Response:
            if self._readiness is None:
                return web.json({"status": "starting"}, status=503)
            checks = await self._readiness.check()
            ready = all(checks.values())
            return web.json(
                {"status": "ready" if ready else "unready", **checks},
                status=200 if ready else 503,
            )


async def unacked_batches(
    stream: faust.StreamT[bytes], size: int, within: float
) -> AsyncIterator[list[faust.EventT[Any]]]:
    """Batches of up to `size` events, each yielded at most `within` seconds after its
    first event arrived, and never acknowledged here: the caller acks each event (with
    `stream.ack(event)`) once it is done with it, in any order. Faust commits an offset
    only when every event before it is acknowledged.
    """
    # The StreamT protocol lacks `noack`; the Stream class every agent gets has it.
    events = aiter(cast(faust.Stream[bytes], stream).noack().events())
    waiting: asyncio.Task[faust.EventT[Any]] | None = None
    while True:
        if waiting is None:
            waiting = asyncio.ensure_future(anext(events))
        batch = [await waiting]
        waiting = None
        deadline = asyncio.get_running_loop().time() + within
        while len(batch) < size:
            waiting = asyncio.ensure_future(anext(events))
            timeout = deadline - asyncio.get_running_loop().time()
            done, _ = await asyncio.wait({waiting}, timeout=max(timeout, 0))
            if not done:
                break
            batch.append(waiting.result())
            waiting = None
        yield batch


def run_worker(app: StreamApp) -> None:
    """Run a stream app until a signal stops it; its logs go out as JSON."""
    level = app.settings.log_level
    faust.Worker(
        app, loglevel=level, logging_config=logs.dict_config(level, app.conf.id)
    ).execute_from_commandline()
