"""HTTP/1.1 emulators (FCM, Web Push) on aiohttp, with the control API mounted.

aiohttp rather than uvicorn: several servers share one process and event loop, and uvicorn
takes over the process's signal handlers while it serves.
"""

from __future__ import annotations

import asyncio
import socket
from abc import abstractmethod

from aiohttp import web

from services.sandbox.emulators.emulator import CONTROL_PREFIX, Emulator

# Big enough for any notification plus headroom; the providers' own limits are checked
# by each emulator so that it can answer with the provider's error.
_MAX_BODY = 1 << 20


class HTTPEmulator(Emulator):
    """An emulator served by aiohttp; subclasses supply the provider routes."""

    def __init__(self, **kwargs: int) -> None:
        super().__init__(**kwargs)
        self._runner: web.AppRunner | None = None
        self._host = "127.0.0.1"
        self._port = 0

    @abstractmethod
    def routes(self) -> list[web.RouteDef]:
        """The provider's own routes."""

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application(client_max_size=_MAX_BODY)
        app.add_routes(self.routes())
        app.router.add_route("*", CONTROL_PREFIX + "{name:.*}", self._control)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            await runner.cleanup()
            raise
        await web.SockSite(runner, sock).start()
        self._runner = runner
        self._host = host
        self._port = int(sock.getsockname()[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    async def pause(self) -> None:
        """Wait the latency the controls ask for before a send answer."""
        latency = self.controls.latency
        if latency:
            await asyncio.sleep(latency)

    async def _control(self, request: web.Request) -> web.Response:
        status, document = self.control(request.method, request.path, await request.read())
        return web.json_response(document, status=status)
