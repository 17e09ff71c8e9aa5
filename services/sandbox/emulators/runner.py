"""Run emulators on an event loop of their own, in a background thread.

Clients that block (google-auth fetches FCM tokens with `requests`, pywebpush's `webpush()`)
would deadlock an emulator that shares their event loop; tests and benchmarks therefore run
the emulators here.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from types import TracebackType

from services.sandbox.emulators.emulator import Emulator

_START_TIMEOUT = 30.0


class EmulatorThread:
    """Starts `emulators` on `host`, each on its port in `ports` (0, a free one, by default).

    Use as a context manager, or call `start()` and `stop()`.
    """

    def __init__(
        self,
        *emulators: Emulator,
        host: str = "127.0.0.1",
        ports: Sequence[int] | None = None,
    ) -> None:
        self.emulators = emulators
        self._host = host
        self._ports = list(ports) if ports is not None else [0] * len(emulators)
        if len(self._ports) != len(emulators):
            raise ValueError("one port per emulator")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="emulators", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        """Start every emulator; return once all listen.

        Raises whatever an emulator raised while starting (OSError for a busy port).
        """
        self._thread.start()
        if not self._started.wait(_START_TIMEOUT):
            raise TimeoutError("the emulators did not start in time")
        if self._error is not None:
            self._thread.join()
            raise self._error

    @property
    def native_id(self) -> int | None:
        """The thread's id in the OS once started (its CPU time is in /proc/self/task/<id>)."""
        return self._thread.native_id

    def stop(self) -> None:
        """Stop every emulator and the thread."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()

    def __enter__(self) -> EmulatorThread:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            for emulator, port in zip(self.emulators, self._ports, strict=True):
                self._loop.run_until_complete(emulator.start(self._host, port))
        except BaseException as exc:
            self._error = exc
        self._started.set()
        try:
            if self._error is None:
                self._loop.run_forever()
        finally:
            for emulator in self.emulators:
                self._loop.run_until_complete(emulator.stop())
            self._loop.close()
