"""Putting messages on a topic for a caller that waits for Kafka's acknowledgement, but not
for ever: a request held on a stuck broker would hold its memory and its connection."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import BaseModel

from services.core.errors import KafkaUnavailableError
from services.core.kafka import encode


class Publisher:
    """A producer's sends, each acknowledged within `timeout` seconds or refused."""

    def __init__(self, producer: AIOKafkaProducer, timeout: float) -> None:
        self._producer = producer
        self._timeout = timeout

    async def publish(self, topic: str, messages: Sequence[tuple[bytes, BaseModel]]) -> None:
        """Put the (key, message) pairs on `topic`, in order; return once Kafka has them all.

        Raises KafkaUnavailableError when the broker does not take them all within the
        timeout; some may have been taken even so.
        """
        try:
            await asyncio.wait_for(self._send(topic, messages), self._timeout)
        except (KafkaError, TimeoutError) as exc:
            raise KafkaUnavailableError(f"Kafka did not take the messages for {topic}") from exc

    async def _send(self, topic: str, messages: Sequence[tuple[bytes, BaseModel]]) -> None:
        pending = [
            await self._producer.send(topic, key=key, value=encode(message))
            for key, message in messages
        ]
        # Shielded: a timeout stops the wait, not the producer's own delivery futures.
        await asyncio.shield(asyncio.gather(*pending))
