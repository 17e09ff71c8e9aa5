"""The feedback's Faust app (app id `pushline-feedback`, also its consumer group)."""

from __future__ import annotations

from services.core.settings import Settings
from services.core.topics import FEEDBACK_APP_ID
from services.core.worker import StreamApp

METRICS_PORT = 9103


def create_app(settings: Settings) -> StreamApp:
    """The feedback worker, ready to run."""
    return StreamApp(FEEDBACK_APP_ID, settings, METRICS_PORT)
