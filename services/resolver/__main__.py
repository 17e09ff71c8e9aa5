"""Entry point: `pushline resolver` or `python -m services.resolver`."""

from __future__ import annotations

import sys

from services.core.process import start
from services.core.settings import Settings
from services.core.worker import run_worker
from services.resolver.app import create_app


def run(settings: Settings) -> None:
    """Run the resolver worker until it is stopped."""
    run_worker(create_app(settings))


if __name__ == "__main__":
    sys.exit(start("resolver", run))
