"""Consumer lag: end offset minus the group's committed offset, per assigned partition."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import REGISTRY

from services.core import kafka, topics
from services.core.lag import LagMeter
from services.core.settings import Settings

pytestmark = pytest.mark.integration

GROUP = "lag-test"


def gauge(topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value(
        "pushline_consumer_lag", {"topic": topic, "partition": str(partition)}
    )


async def test_lag_counts_what_the_group_has_not_committed(
    settings: Settings, created_topics: None
) -> None:
    dlq = settings.scoped(topics.DLQ.name)
    producer = kafka.producer(settings, client_id="test")
    await producer.start()
    try:
        for n in range(5):
            await producer.send_and_wait(dlq, b"x%d" % n, partition=0)
        await producer.send_and_wait(dlq, b"y", partition=1)
    finally:
        await producer.stop()
    group = settings.scoped(GROUP)
    committer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_servers, group_id=group, enable_auto_commit=False
    )
    await committer.start()
    try:
        committer.assign([TopicPartition(dlq, 0)])
        await committer.commit({TopicPartition(dlq, 0): OffsetAndMetadata(2, "")})
    finally:
        await committer.stop()

    meter = LagMeter(settings, group)
    await meter.start()
    try:
        # Partition 1 was never committed: everything on it is lag. Faust's own topics
        # (anything not Pushline's) are not measured.
        lags = await meter.measure([(dlq, 0), (dlq, 1), (f"{group}-__assignor-__leader", 0)])
        assert lags == {("push.dlq", 0): 3, ("push.dlq", 1): 1}
        assert (gauge("push.dlq", 0), gauge("push.dlq", 1)) == (3, 1)

        # Partition 0 moved to another worker: this one stops reporting it.
        assert await meter.measure([(dlq, 1)]) == {("push.dlq", 1): 1}
        assert gauge("push.dlq", 0) is None
    finally:
        await meter.close()
    assert gauge("push.dlq", 1) is None
