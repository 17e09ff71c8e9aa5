"""The foundation works against the real servers: Kafka to a Faust agent, and the store."""

from __future__ import annotations

import asyncio
import time
import uuid

import pymongo.errors
import pytest
from aiokafka.admin import NewTopic
from pymongo.asynchronous.database import AsyncDatabase

from services.core import kafka
from services.core.events import RegisterDevice
from services.core.settings import Settings
from services.core.store.client import Document
from services.core.store.devices import device_id
from services.core.store.indexes import ensure_indexes
from services.core.tokens import hash_token
from tests.integration import processes

pytestmark = pytest.mark.integration


async def test_a_faust_agent_consumes_what_a_producer_wrote(
    settings: Settings, db: AsyncDatabase[Document], child_env: dict[str, str]
) -> None:
    run = uuid.uuid4().hex[:10]
    topic = f"test.foundation.{run}"
    admin = kafka.admin_client(settings)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()

    sent = [f"req-{run}-{i}" for i in range(5)]
    producer = kafka.producer(settings, client_id="test")
    await producer.start()
    try:
        for request_id in sent:
            message = RegisterDevice(
                request_id=request_id,
                account_id="acc",
                app_id="app",
                platform="android",
                token=f"token-{request_id}",
            )
            await producer.send_and_wait(topic, kafka.encode(message), key=request_id.encode())
    finally:
        await producer.stop()

    port = processes.free_port()
    env = {**child_env, "PUSHLINE_METRICS_PORT": str(port)}
    worker = processes.Process(["tests.integration.echo_worker", f"test-{run}", topic], env)
    try:
        await worker.wait_ready(f"http://127.0.0.1:{port}/readyz")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            seen = {doc["request_id"] async for doc in db.echoed.find({})}
            if seen >= set(sent):
                break
            await asyncio.sleep(0.3)
        assert seen == set(sent), worker.output()
    finally:
        worker.close()


async def test_store_round_trip_with_the_device_id_as_key(db: AsyncDatabase[Document]) -> None:
    await ensure_indexes(db)
    token_hash = hash_token("token-1")
    device = {
        "_id": device_id("app", token_hash),
        "app_id": "app",
        "token_hash": token_hash,
        "platform": "android",
        "contact_id": "contact-1",
    }
    await db.devices.insert_one(dict(device))
    found = await db.devices.find_one({"_id": device_id("app", token_hash)})
    assert found is not None
    assert found["contact_id"] == "contact-1"

    with pytest.raises(pymongo.errors.DuplicateKeyError):
        await db.devices.insert_one({**device, "contact_id": "contact-2"})
    assert await db.devices.count_documents({}) == 1

    # The same token under another app is another device.
    await db.devices.insert_one(
        {**device, "_id": device_id("other-app", token_hash), "app_id": "other-app"}
    )
    assert await db.devices.count_documents({}) == 2
