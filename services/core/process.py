"""How a Pushline process starts: one sequence for every service and the emulators.

`pushline <service>` (services/cli.py) and `python -m services.<service>` both start here,
so a service starts the same way either way, and neither entry point imports the other.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from services.core import eventloop, heap
from services.core import logging as logs
from services.core.errors import ConfigError
from services.core.settings import Settings, load_settings


def settings() -> Settings | None:
    """Install the event loop and read the settings: None once a configuration error is
    printed (the process then exits with 2)."""
    eventloop.install()
    try:
        return load_settings()
    except ConfigError as exc:
        print(f"pushline: {exc}", file=sys.stderr)
        return None


def start(name: str, run: Callable[[Settings], None]) -> int:
    """Read the settings (`settings`), configure logging, freeze the start-up heap, then
    `run(settings)` until it returns.

    Returns the process exit code: 2 for a configuration error (printed), else 0.
    """
    read = settings()
    if read is None:
        return 2
    logs.configure(read.log_level, f"pushline-{name}")
    heap.freeze()
    run(read)
    return 0
