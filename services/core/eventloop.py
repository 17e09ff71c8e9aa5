"""The event loop every Pushline process runs on: uvloop.

`install()` is called once, first thing, as a process starts (services/core/process.py for
the services and the emulators, services/cli.py for the operator commands), so every
loop the process creates afterwards is a uvloop loop: uvicorn's (it is told to follow the
policy), the Faust workers' (mode takes the policy's loop), the emulators' and the operator
commands' (`asyncio.run`). Each service then `report()`s the loop it really runs on.
"""

from __future__ import annotations

import asyncio
import logging

import uvloop

from services.core import metrics

log = logging.getLogger(__name__)


def install() -> None:
    """Make uvloop the loop every later `asyncio.run()` or new event loop in this process is."""
    # uvloop.install() warns on Python 3.12+; setting its policy is what it does.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def report() -> None:
    """Name the running loop's implementation (`uvloop`, or `asyncio` without `install()`)
    in `pushline_event_loop_info{loop}` and in a log line."""
    name = type(asyncio.get_running_loop()).__module__.partition(".")[0]
    metrics.EVENT_LOOP.info({"loop": name})
    log.info("running on the %s event loop", name, extra={"event_loop": name})
