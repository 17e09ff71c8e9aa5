"""Start Pushline processes for a test and wait for their HTTP endpoints."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

import httpx

from tests.stack import ROOT


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A `python -m ...` child started from the repository root.

    Its output goes to a temporary file, not a pipe: a chatty child would block on a full
    pipe that nobody reads.
    """

    def __init__(self, args: Sequence[str], env: dict[str, str], niceness: int = 0) -> None:
        """`niceness` > 0 runs the child at that much lower CPU priority (`nice`)."""
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
        # `nice` execs the child in its place: the pid is the child's.
        command = ["nice", "-n", str(niceness)] if niceness else []
        self.popen = subprocess.Popen(
            [*command, sys.executable, "-m", *args],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM the process and wait; SIGKILL it if it does not stop in time."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def output(self) -> str:
        """What the process printed so far (its last 5,000 characters)."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-5000:]

    def close(self) -> None:
        """Stop the process and drop its output."""
        self.stop()
        self._log.close()

    async def wait_ready(self, url: str, within: float = 90.0) -> httpx.Response:
        """Poll `url` until it answers 200; fail with the output if it never does."""
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.popen.poll() is not None:
                    raise AssertionError(
                        f"process exited {self.popen.returncode}:\n{self.output()}"
                    )
                try:
                    response = await client.get(url)
                    if response.status_code == 200:
                        return response
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.3)
        raise AssertionError(f"{url} not ready in {within} s:\n{self.output()}")
