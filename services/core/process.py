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


def start(name: str, run: Callable[[Settings], None]) -> int:
    """Install the event loop, read the settings, configure logging, freeze the start-up
    heap, then `run(settings)` until it returns.

    Returns the process exit code: 2 for a configuration error (printed), else 0.
    """
    eventloop.install()
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"pushline: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, f"pushline-{name}")
    heap.freeze()
    run(settings)
    return 0
