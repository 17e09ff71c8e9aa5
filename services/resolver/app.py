"""The resolver's Faust app (app id `pushline-resolver`, also its consumer group)."""

from __future__ import annotations

from services.core.settings import Settings
from services.core.topics import RESOLVER_APP_ID
from services.core.worker import StreamApp

METRICS_PORT = 9101


def create_app(settings: Settings) -> StreamApp:
    """The resolver worker, ready to run."""
    return StreamApp(RESOLVER_APP_ID, settings, METRICS_PORT)
