"""Where the tests find Kafka and the store.

In order: the `PUSHLINE_KAFKA_BOOTSTRAP` / `PUSHLINE_MONGODB_URI` the caller set (what
`make test` does, after starting the local stack); testcontainers when a Docker engine
answers; otherwise the project's local stack, started with `deploy/local/stack.sh up`.
A missing Kafka or store is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCAL_KAFKA = "127.0.0.1:9092"
LOCAL_STORE = "mongodb://127.0.0.1:27017/pushline"


def _docker_answers() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    result = subprocess.run([docker, "info"], capture_output=True, timeout=20, check=False)
    return result.returncode == 0


@contextmanager
def endpoints() -> Iterator[tuple[str, str]]:
    """Yield (kafka bootstrap, MongoDB URI) of running servers for the test session."""
    kafka = os.environ.get("PUSHLINE_KAFKA_BOOTSTRAP")
    mongodb = os.environ.get("PUSHLINE_MONGODB_URI")
    with ExitStack() as stack:
        if (kafka is None or mongodb is None) and _docker_answers():
            from testcontainers.community.kafka import KafkaContainer
            from testcontainers.community.mongodb import MongoDbContainer

            if kafka is None:
                kafka = stack.enter_context(KafkaContainer().with_kraft()).get_bootstrap_server()
            if mongodb is None:
                container = stack.enter_context(MongoDbContainer("mongo:7"))
                mongodb = container.get_connection_url() + "/pushline?authSource=admin"
        if kafka is None or mongodb is None:
            subprocess.run([str(ROOT / "deploy/local/stack.sh"), "up"], check=True)
            kafka = kafka or LOCAL_KAFKA
            mongodb = mongodb or LOCAL_STORE
        yield kafka, mongodb
