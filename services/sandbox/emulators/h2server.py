"""A small HTTP/2-over-TLS server on asyncio and h2, for the APNs emulator.

Each request is handed to a handler once its stream ends, and its answer is written in the
same pass over the bytes received: the answers to every request of one read leave in one TLS
write, with no task per request (a task and a write per answer cost the emulator more than
its checks). A response body that fits the peer's flow-control window and frame size goes out
as ONE DATA frame that ends the stream, as Apple's servers send it (aioapns 4.0, a client
many apps use, parses every DATA frame as a whole JSON document).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

log = logging.getLogger(__name__)

# Apple advertises 1,000 concurrent streams per connection.
MAX_CONCURRENT_STREAMS = 1000
_MAX_BODY = 1 << 20


@dataclass(frozen=True)
class H2Request:
    """A complete request: pseudo-headers stripped into fields, header names lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class H2Response:
    """What the handler answers, and how many seconds later to send it."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    delay: float = 0.0


Handler = Callable[[H2Request], H2Response]


class _Connection(asyncio.Protocol):
    def __init__(self, handler: Handler, connections: set[_Connection]) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        self._h2 = h2.connection.H2Connection(config=config)
        self._handler = handler
        self._connections = connections
        self._transport: asyncio.Transport | None = None
        self._headers: dict[int, list[tuple[str, str]]] = {}
        self._bodies: dict[int, bytearray] = {}
        # What is left of a response body while the peer's flow-control window is full.
        self._unsent: dict[int, memoryview] = {}
        self._delayed: dict[int, asyncio.TimerHandle] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream server's transport; uvloop's do not subclass asyncio.Transport.
        self._transport = cast(asyncio.Transport, transport)
        self._connections.add(self)
        self._h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS
            },
        )
        self._h2.initiate_connection()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        for timer in self._delayed.values():
            timer.cancel()
        self._delayed.clear()
        self._unsent.clear()
        self._transport = None

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            log.debug("HTTP/2 protocol error; closing the connection", exc_info=True)
            self._flush()
            self.close()
            return
        for event in events:
            self._on(event)
        self._flush()

    def _on(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived) and event.stream_id is not None:
            self._headers[event.stream_id] = [
                (str(name), str(value)) for name, value in event.headers or []
            ]
            self._bodies[event.stream_id] = bytearray()
        elif isinstance(event, h2.events.DataReceived) and event.stream_id is not None:
            body = self._bodies.get(event.stream_id)
            if body is not None and len(body) + len(event.data or b"") <= _MAX_BODY:
                body.extend(event.data or b"")
            self._h2.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded) and event.stream_id is not None:
            self._dispatch(event.stream_id)
        elif isinstance(event, h2.events.StreamReset) and event.stream_id is not None:
            self._headers.pop(event.stream_id, None)
            self._bodies.pop(event.stream_id, None)
            self._unsent.pop(event.stream_id, None)
            timer = self._delayed.pop(event.stream_id, None)
            if timer is not None:
                timer.cancel()
        elif isinstance(event, h2.events.WindowUpdated):
            for stream_id in list(self._unsent):
                self._send_body(stream_id, self._unsent.pop(stream_id))
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.close()

    def _dispatch(self, stream_id: int) -> None:
        raw = self._headers.pop(stream_id, [])
        body = bytes(self._bodies.pop(stream_id, b""))
        pseudo = {name: value for name, value in raw if name.startswith(":")}
        headers = {name.lower(): value for name, value in raw if not name.startswith(":")}
        request = H2Request(pseudo.get(":method", ""), pseudo.get(":path", ""), headers, body)
        try:
            response = self._handler(request)
        except Exception:
            log.exception("emulator handler failed")
            response = H2Response(500, [("content-type", "application/json")], b"{}")
        if response.delay <= 0:
            self._respond(stream_id, response)
            return
        self._delayed[stream_id] = asyncio.get_running_loop().call_later(
            response.delay, self._respond_later, stream_id, response
        )

    def _respond_later(self, stream_id: int, response: H2Response) -> None:
        del self._delayed[stream_id]
        self._respond(stream_id, response)
        self._flush()

    def _respond(self, stream_id: int, response: H2Response) -> None:
        headers = [(":status", str(response.status)), *response.headers]
        if response.body:
            headers.append(("content-length", str(len(response.body))))
        try:
            self._h2.send_headers(stream_id, headers, end_stream=not response.body)
        except h2.exceptions.ProtocolError:
            # The client reset or closed the stream meanwhile; the rest of the connection
            # is unaffected.
            log.debug("no answer on stream %d", stream_id, exc_info=True)
            return
        if response.body:
            self._send_body(stream_id, memoryview(response.body))

    def _send_body(self, stream_id: int, view: memoryview) -> None:
        """Send as much of the body as the window allows; keep the rest for a window update."""
        try:
            while view:
                size = min(
                    len(view),
                    self._h2.local_flow_control_window(stream_id),
                    self._h2.max_outbound_frame_size,
                )
                if size <= 0:
                    self._unsent[stream_id] = view
                    return
                chunk, view = view[:size], view[size:]
                self._h2.send_data(stream_id, bytes(chunk), end_stream=not view)
        except h2.exceptions.ProtocolError:
            log.debug("no answer body on stream %d", stream_id, exc_info=True)

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)


class H2Server:
    """Serves `handler` over HTTP/2 with TLS (ALPN h2)."""

    def __init__(self, handler: Handler, context: ssl.SSLContext) -> None:
        self._handler = handler
        self._context = context
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()

    async def start(self, host: str, port: int) -> int:
        """Listen; return the bound port."""
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self._handler, self._connections), sock=sock, ssl=self._context
        )
        return int(sock.getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and close every open connection."""
        if self._server is None:
            return
        self._server.close()
        for connection in list(self._connections):
            connection.close()
        await self._server.wait_closed()
        self._server = None
