"""Entry point: `pushline ingest` or `python -m services.ingest`."""

from __future__ import annotations

import sys

import uvicorn

from services.core.process import start
from services.core.settings import Settings
from services.ingest.app import create_app


def run(settings: Settings) -> None:
    """Serve the ingest on PUSHLINE_INGEST_HOST:PUSHLINE_INGEST_PORT until stopped."""
    uvicorn.run(
        create_app(settings),
        host=settings.ingest_host,
        port=settings.ingest_port,
        log_config=None,
        access_log=False,
        server_header=False,
        # The loop the process's policy makes (services.core.eventloop), not uvicorn's own.
        loop="none",
        http="httptools",
    )


if __name__ == "__main__":
    sys.exit(start("ingest", run))
