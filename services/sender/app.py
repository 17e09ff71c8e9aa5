"""The sender's Faust app (app id `pushline-sender`, also its consumer group)."""

from __future__ import annotations

from services.core.settings import Settings
from services.core.topics import SENDER_APP_ID
from services.core.worker import StreamApp

METRICS_PORT = 9102


def create_app(settings: Settings) -> StreamApp:
    """The sender worker, ready to run."""
    return StreamApp(SENDER_APP_ID, settings, METRICS_PORT)
