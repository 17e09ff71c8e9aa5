"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import AutoReconnect

from services.core import kafka
from services.core.settings import Settings
from services.core.store.client import Document
from tests import stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse a test that reaches the real servers without the `integration` marker: the
    marker is how a run selects or leaves out the tests that need them."""
    unmarked = [
        item.nodeid
        for item in items
        if "endpoints" in getattr(item, "fixturenames", ())
        and item.get_closest_marker("integration") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "tests using Kafka or the store need @pytest.mark.integration: " + ", ".join(unmarked)
        )


@pytest.fixture(scope="session")
def endpoints() -> Iterator[tuple[str, str]]:
    """(Kafka bootstrap, MongoDB URI) of the real servers this session tests against."""
    with stack.endpoints() as found:
        yield found


@pytest.fixture
async def settings(endpoints: tuple[str, str]) -> AsyncIterator[Settings]:
    """Settings pointing at the real servers, with a database and a Kafka namespace
    (topics, consumer groups) of this test's own; its topics are deleted afterwards."""
    kafka_bootstrap, mongodb = endpoints
    base, _, query = mongodb.partition("?")
    root = base.rsplit("/", 1)[0]
    run = uuid.uuid4().hex[:12]
    uri = f"{root}/test_{run}" + (f"?{query}" if query else "")
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap, mongodb_uri=uri, namespace=f"t{run}", topic_partitions=2
    )
    yield settings
    await kafka.delete_namespace(settings)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[AsyncDatabase[Document]]:
    """The test's own database on the real store, dropped afterwards."""
    client: AsyncMongoClient[Document] = AsyncMongoClient(settings.mongodb_uri, tz_aware=True)
    database = client.get_default_database()
    try:
        yield database
    finally:
        try:
            await _drop(client, database.name)
        finally:
            await client.close()


async def _drop(client: AsyncMongoClient[Document], name: str) -> None:
    """Drop the database, over a fresh connection if the pooled one died: a test that
    restarted the store leaves the pool holding sockets the old server closed, and the
    first command over one fails however healthy the new server is."""
    for attempt in range(3):
        try:
            await client.drop_database(name)
            return
        except AutoReconnect:
            if attempt == 2:
                raise


@pytest.fixture
def child_env(settings: Settings) -> dict[str, str]:
    """Environment for a service subprocess: this test's endpoints and nothing stale."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHLINE_")}
    env.update(
        PUSHLINE_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        PUSHLINE_MONGODB_URI=settings.mongodb_uri,
        PUSHLINE_TOPIC_PARTITIONS=str(settings.topic_partitions),
        PUSHLINE_NAMESPACE=settings.namespace,
    )
    return env
