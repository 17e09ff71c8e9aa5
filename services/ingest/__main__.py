"""Entry point: `pushline ingest` or `python -m services.ingest`."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from services.core.process import start
from services.core.settings import Settings
from services.ingest.app import create_admin_app, create_app


def run(settings: Settings) -> None:
    """Serve the public ingest on PUSHLINE_INGEST_HOST:PUSHLINE_INGEST_PORT and, when
    PUSHLINE_ADMIN_TOKEN is set, the admin API on PUSHLINE_ADMIN_HOST:PUSHLINE_ADMIN_PORT,
    until stopped."""
    listeners = [_Listener(create_app(settings), settings.ingest_host, settings.ingest_port)]
    if settings.admin_token is not None:
        admin = create_admin_app(settings)
        listeners.append(_Listener(admin, settings.admin_host, settings.admin_port))
    # The loop the process's policy makes (services.core.eventloop), not uvicorn's own.
    asyncio.run(_serve(listeners))


class _Listener(uvicorn.Server):
    """One app on one address. Signals are `_serve`'s: each listener taking them for itself
    would leave the other running."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        super().__init__(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_config=None,
                access_log=False,
                server_header=False,
                loop="none",
                http="httptools",
            )
        )

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve(listeners: list[_Listener]) -> None:
    """Run every listener until SIGTERM or SIGINT, or until one of them stops (its port was
    taken, its start-up failed): then every one shuts down gracefully, a second SIGINT
    cutting that short."""

    def stop(sig: int) -> None:
        for listener in listeners:
            listener.handle_exit(sig, None)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig)
    serving = [asyncio.create_task(listener.serve()) for listener in listeners]
    try:
        await asyncio.wait(serving, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for listener in listeners:
            listener.should_exit = True
        await asyncio.gather(*serving)


if __name__ == "__main__":
    sys.exit(start("ingest", run))
