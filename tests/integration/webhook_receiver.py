"""A real HTTP server on 127.0.0.1 that records the webhook calls it receives."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Receiver:
    """What the server got, and the statuses it will answer next (then 200)."""

    base_url: str = ""
    calls: list[Received] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)


@asynccontextmanager
async def webhook_receiver() -> AsyncIterator[Receiver]:
    """Serve on an ephemeral port until the block ends."""
    receiver = Receiver()

    async def handle(request: web.Request) -> web.Response:
        receiver.calls.append(Received(request.path, dict(request.headers), await request.json()))
        status = receiver.answers.pop(0) if receiver.answers else 200
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    receiver.base_url = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        await runner.cleanup()
