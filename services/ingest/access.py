"""What the ingest records of every request: the request metrics, and one JSON access line
(method, route template, status, seconds, the caller's account id) on this module's logger,
or for the admin listener on `ADMIN_LOG`.

Routes are named by their template (`/v1/notifications/{notification_id}`), never by the raw
path, which holds ids; nothing from the headers or the body is recorded, so no key or token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.core import metrics

log = logging.getLogger(__name__)
# Not a child of `log`: an operator routes and keeps the admin listener's lines apart, as
# they do the audit log's.
ADMIN_LOG = logging.getLogger("services.ingest.admin_access")

UNMATCHED = "unmatched"


class Access:
    """ASGI middleware: counts, times and logs every HTTP request once it is answered."""

    def __init__(self, app: ASGIApp, log: logging.Logger = log) -> None:
        self._app = app
        self._log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        # What the server answers when the app fails before it starts a response.
        status = 500

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, observed)
        finally:
            seconds = time.perf_counter() - started
            route = route_of(scope)
            metrics.INGEST_REQUESTS.labels(route, str(status)).inc()
            metrics.INGEST_LATENCY.labels(route).observe(seconds)
            self._log.info(
                "%s %s %d",
                scope["method"],
                route,
                status,
                extra={
                    "method": scope["method"],
                    "route": route,
                    "status": status,
                    "seconds": round(seconds, 6),
                    "account_id": _state(scope).get(_ACCOUNT_ID),
                },
            )


def route_of(scope: Scope) -> str:
    """The template of the route the router chose (for a wrong method too), or `unmatched`."""
    # Matching the app's routes again would not do: an included router is one route
    # without a path of its own.
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else UNMATCHED


def identify(request: Request, account_id: str) -> None:
    """Note the account a request authenticated as, for its access line."""
    _state(request.scope)[_ACCOUNT_ID] = account_id


def origin(request: Request) -> dict[str, str | None]:
    """Where a request came from and what it asked, for an audit line."""
    return {
        "client": request.client.host if request.client else None,
        "method": request.method,
        "route": route_of(request.scope),
    }


# Starlette keeps `request.state` in the scope, which this middleware shares with the app.
_ACCOUNT_ID = "account_id"


def _state(scope: Scope) -> MutableMapping[str, Any]:
    state: MutableMapping[str, Any] = scope.setdefault("state", {})
    return state
