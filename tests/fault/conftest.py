"""The fault tests' own Kafka broker and store: the project's stack script runs a second
stack on ports and a state directory of its own, so that killing its broker or stopping
its store touches no other test."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.processes import free_port
from tests.stack import ROOT

STACK = ROOT / "deploy/local/stack.sh"


class Stack:
    """A broker and a store started by `deploy/local/stack.sh` with their own ports."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.kafka_port, self.store_port = free_port(), free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PUSHLINE_")},
            "PUSHLINE_STATE_DIR": str(state),
            "PUSHLINE_KAFKA_PORT": str(self.kafka_port),
            "PUSHLINE_KAFKA_CONTROLLER_PORT": str(free_port()),
            "PUSHLINE_STORE_PORT": str(self.store_port),
            "PUSHLINE_KAFKA_HEAP": "512m",
            "PUSHLINE_STORE_HEAP": "512m",
        }

    @property
    def kafka(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def mongodb(self) -> str:
        return f"mongodb://127.0.0.1:{self.store_port}/pushline"

    def up(self) -> None:
        """Start whatever is not running and wait until both answer."""
        subprocess.run([str(STACK), "up"], env=self.env, check=True)

    def down(self) -> None:
        subprocess.run([str(STACK), "down"], env=self.env, check=False)

    def kill_broker(self) -> None:
        """SIGKILL the broker: no controlled shutdown, no flush."""
        self._signal("kafka", signal.SIGKILL)

    def kill_store(self) -> None:
        """SIGKILL the store: no shutdown hook, no flush of what it has not committed."""
        self._signal("store", signal.SIGKILL)

    def stop_store(self) -> None:
        """Stop the store (it flushes its file on the way out) and wait until it is gone."""
        self._signal("store", signal.SIGTERM)

    def _signal(self, name: str, signum: signal.Signals) -> None:
        pid = int((self.state / f"{name}.pid").read_text())
        os.kill(pid, signum)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        raise AssertionError(f"{name} ({pid}) did not stop")


@pytest.fixture(scope="session")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("fault-stack"))
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="session")
def endpoints(fault_stack: Stack) -> tuple[str, str]:
    """The fault stack, in place of the shared one, for every fixture built on it."""
    return fault_stack.kafka, fault_stack.mongodb
