"""Consumer lag: how far a worker's consumer group is behind the end of what it reads.

Each worker measures the partitions assigned to it (end offset minus the group's committed
offset) and publishes them as `pushline_consumer_lag{topic, partition}`; partitions that
move to another worker are dropped from this one's metrics, so the sum over instances is
the group's lag.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.core import kafka, metrics
from services.core.settings import Settings
from services.core.topics import all_topics

log = logging.getLogger(__name__)


class LagMeter:
    """Reads end offsets and one consumer group's committed offsets; sets the lag gauge."""

    def __init__(self, settings: Settings, group: str) -> None:
        self._group = group
        # Scoped topic name -> the name used as a label (without the namespace).
        self._labels = {settings.scoped(topic.name): topic.name for topic in all_topics()}
        self._admin: AIOKafkaAdminClient = kafka.admin_client(settings)
        # No group: this consumer only asks for offsets, it never joins or commits.
        self._offsets = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_servers,
            client_id="pushline-lag",
            enable_auto_commit=False,
            request_timeout_ms=10_000,
        )
        self._shown: set[tuple[str, str]] = set()

    async def start(self) -> None:
        """Connect both clients."""
        await self._admin.start()
        await self._offsets.start()

    async def close(self) -> None:
        """Disconnect both clients and forget the partitions this meter showed."""
        self._forget(set())
        await self._offsets.stop()
        await self._admin.close()

    async def measure(self, assigned: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Set the lag of each assigned Pushline partition; return it by (topic, partition).

        Partitions of topics that are not Pushline's (Faust's own) are ignored. A partition
        the group never committed lags by everything still retained on it.
        Raises aiokafka's KafkaError when the cluster does not answer.
        """
        partitions = [TopicPartition(t, p) for t, p in assigned if t in self._labels]
        lags: dict[tuple[str, int], int] = {}
        if partitions:
            ends = await self._offsets.end_offsets(partitions)
            starts = await self._offsets.beginning_offsets(partitions)
            committed = await self._admin.list_consumer_group_offsets(
                self._group, partitions=partitions
            )
            for tp in partitions:
                done = committed.get(tp)
                position = done.offset if done is not None and done.offset >= 0 else starts[tp]
                lags[(self._labels[tp.topic], tp.partition)] = max(ends[tp] - position, 0)
        shown = {(topic, str(partition)) for topic, partition in lags}
        self._forget(shown)
        for (topic, partition), lag in lags.items():
            metrics.CONSUMER_LAG.labels(topic, str(partition)).set(lag)
        self._shown = shown
        return lags

    def _forget(self, keep: set[tuple[str, str]]) -> None:
        for labels in self._shown - keep:
            metrics.CONSUMER_LAG.remove(*labels)
        self._shown &= keep
