"""Liveness and readiness, the same for the ingest and every worker.

Ready means connected: the store answers a ping and the Kafka cluster a metadata call.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient
from pymongo.asynchronous.database import AsyncDatabase

from services.core.errors import UnavailableError
from services.core.store.client import Document, ping

log = logging.getLogger(__name__)

_TIMEOUT = 2.0


class Readiness:
    """Checks both dependencies on demand; built once per process."""

    def __init__(self, db: AsyncDatabase[Document], admin: AIOKafkaAdminClient) -> None:
        self._db = db
        self._admin = admin

    async def close(self) -> None:
        """Release the admin connection."""
        await self._admin.close()

    async def check(self) -> dict[str, bool]:
        """Whether each dependency answered within two seconds."""
        store, kafka = await asyncio.gather(self._store(), self._kafka())
        return {"store": store, "kafka": kafka}

    async def _store(self) -> bool:
        try:
            await asyncio.wait_for(ping(self._db), _TIMEOUT)
        except (UnavailableError, TimeoutError):
            return False
        return True

    async def _kafka(self) -> bool:
        try:
            cluster = await asyncio.wait_for(self._admin.describe_cluster(), _TIMEOUT)
        except Exception:
            log.debug("kafka readiness check failed", exc_info=True)
            return False
        return bool(cluster["brokers"])
