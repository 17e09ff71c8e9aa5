"""What the ingest takes at most: request bodies of `PUSHLINE_MAX_BODY_BYTES` and
`PUSHLINE_INGEST_MAX_IN_FLIGHT` requests at once. Beyond that it answers at once, in the
caller's dialect, instead of queueing work and memory without bound.

A body is read here, counted as it arrives, before any route sees it: a declared
`Content-Length` over the limit is refused unread, and a chunked body as soon as it passes
the limit, so at most the limit is ever held per request. Health, readiness and metrics
are not counted, so probes answer under load.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.ingest.refusals import Dialects, Refusal

_OPERATIONS = frozenset({"/healthz", "/readyz", "/metrics"})


class Limits:
    """ASGI middleware enforcing the body size and in-flight limits."""

    def __init__(
        self, app: ASGIApp, *, dialects: Dialects, max_body: int, max_in_flight: int
    ) -> None:
        self._app = app
        self._dialects = dialects
        self._max_body = max_body
        self._max_in_flight = max_in_flight
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _OPERATIONS:
            await self._app(scope, receive, send)
            return
        path: str = scope["path"]
        if self.in_flight >= self._max_in_flight:
            busy = Refusal(503, "the ingest is busy; retry later")
            await self._dialects.answer(path, busy)(scope, receive, send)
            return
        self.in_flight += 1
        try:
            body = await self._read(scope, receive)
            if body is None:
                too_large = Refusal(413, f"the body is larger than {self._max_body} bytes")
                answer = self._dialects.answer(path, too_large)
                # The rest of the body stays unread: this connection cannot be reused.
                answer.headers["Connection"] = "close"
                await answer(scope, receive, send)
                return
            await self._app(scope, _replay(body, receive), send)
        finally:
            self.in_flight -= 1

    async def _read(self, scope: Scope, receive: Receive) -> list[Message] | None:
        """The body's messages, or None once it is known to be over the limit."""
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value.decode("latin-1").strip()
                if not declared.isdigit() or int(declared) > self._max_body:
                    return None
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages
            size += len(message.get("body", b""))
            if size > self._max_body:
                return None
            if not message.get("more_body", False):
                return messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    queued = list(messages)

    async def replayed() -> Message:
        # The body as it came, then the server's own messages (a disconnect).
        return queued.pop(0) if queued else await receive()

    return replayed
