"""The Kafka transport every stream worker uses: Faust's, with a shorter fetch wait.

Faust's consumer asks the broker to hold a fetch for up to 1.5 s while none of the
partitions in it has data, and aiokafka keeps one fetch in flight per broker; partitions
whose records are still being worked through stay out of the fetch. So a worker whose
busy partitions all wait to be worked through, while some others are empty (another
provider's jobs, a lane with nothing in it), sends a fetch of only empty partitions, and
its busy partitions cannot be fetched again until the broker gives up on it: a stall of
up to 1.5 s, again and again. A wait of FETCH_WAIT_MS bounds the stall; an idle worker
asks the broker ten times a second instead of once in 1.5 s.
"""

from __future__ import annotations

from typing import Any, ClassVar

import aiokafka
from faust.transport.drivers import aiokafka as driver

# The longest the broker holds a fetch while none of its partitions has data.
FETCH_WAIT_MS = 100


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Faust passes a fixed wait and exposes no setting; the consumer reads it at start.
        consumer._fetch_max_wait_ms = FETCH_WAIT_MS
        return consumer


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(driver.Transport):
    """Faust's Kafka transport, its consumer fetching with FETCH_WAIT_MS."""

    Consumer: ClassVar[Any] = _Consumer
