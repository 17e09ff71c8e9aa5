"""Entry point: `pushline sender` or `python -m services.sender`."""

from __future__ import annotations

import sys

from services.core.process import start
from services.core.settings import Settings
from services.core.worker import run_worker
from services.sender.app import create_app


def run(settings: Settings) -> None:
    """Run the sender worker until it is stopped."""
    run_worker(create_app(settings))


if __name__ == "__main__":
    sys.exit(start("sender", run))
