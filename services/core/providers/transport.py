"""The HTTP transport of the FCM and Web Push adapters: aiohttp over HTTP/1.1 keep-alive.

Chosen by measurement on this machine (ARCHITECTURE.md "Known facts", bench/README.md):
httpx costs ~2.2 CPU s per 1,000 requests, aiohttp ~0.2. FCM also speaks HTTP/2, but
aiohttp has no HTTP/2 client and the one at hand, httpx with h2, is the same httpx; so each
adapter keeps a bounded pool of HTTP/1.1 keep-alive connections instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

import aiohttp

from services.core.fields import ProviderName
from services.core.providers.base import Result
from services.core.providers.classify import ErrorClass

# Connections per adapter (one adapter per app and provider): what one sender process keeps
# on the wire at most (`PUSHLINE_SEND_CONCURRENCY` 8 x calls of 20 jobs) fits in it with
# room, and a provider never sees more from one process.
CONNECTIONS: Final = 160
# An idle connection is closed after this long; a busy one is reused for every request.
KEEPALIVE: Final = 30.0

# Exceptions that mean no answer arrived: the request may be made again.
UNANSWERED: Final = (aiohttp.ClientError, asyncio.TimeoutError)


class Session:
    """One aiohttp session, opened on first use in the running event loop (aiohttp binds a
    session to the loop it is created in), closed by `aclose`."""

    def __init__(self, connector: Callable[[], aiohttp.TCPConnector], timeout: float) -> None:
        self._connector = connector
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        """The session, opened now if it is not yet."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=self._connector(),
                timeout=self._timeout,
                # Proxies from the environment would connect on our behalf, unchecked.
                trust_env=False,
            )
        return self._session

    async def aclose(self) -> None:
        """Close the session and its connections, if it was opened."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def pool() -> aiohttp.TCPConnector:
    """A connector to endpoints the operator configured (FCM): bounded, kept alive."""
    return aiohttp.TCPConnector(limit=CONNECTIONS, keepalive_timeout=KEEPALIVE)


def unanswered(provider: ProviderName, exc: BaseException) -> Result:
    """The `retry` result of a request that got no answer (refused, reset, timed out)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = "ConnectError"
    elif isinstance(exc, asyncio.TimeoutError):
        reason = "Timeout"
    else:
        reason = type(exc).__name__
    return Result.failure(
        provider,
        ErrorClass.RETRYABLE,
        reason=reason,
        detail=str(exc)[:500],
        # Only a connection that never opened is sure to have carried nothing.
        maybe_delivered=not isinstance(exc, aiohttp.ClientConnectorError),
    )
