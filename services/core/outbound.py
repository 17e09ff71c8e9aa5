"""Where Pushline may connect on a caller's behalf (webhooks, Web Push endpoints).

A URL a caller gave us must not make Pushline reach loopback, private, link-local,
metadata or multicast addresses, unless the operator allows it
(`PUSHLINE_WEBHOOK_ALLOW_PRIVATE`). The check happens when a connection is opened, inside
the HTTP transport: the host is resolved once, every address it resolves to must be
public, and the connection goes to exactly such an address. A name that resolves to a
public address when checked and to a private one a moment later (DNS rebinding) therefore
cannot steer the connection. TLS still verifies, and sends as SNI, the URL's host name; the
`Host` header is the URL's. Redirects are never followed: the clients built here return a
3xx as it is.

Two transports carry the policy: `client()`, an httpx client (webhooks), and `connector()`,
an aiohttp connector (Web Push, whose volume needs aiohttp's lower cost per request).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager

import aiohttp
import httpcore
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult

from services.core.errors import OutboundRefusedError

# (host, port) -> the addresses it resolves to.
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses as the system resolver gives them."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def is_public(address: str) -> bool:
    """Whether an IP address is globally routable unicast (IPv4-mapped IPv6 as its IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def public_addresses(host: str, port: int, resolve: Resolver) -> list[str]:
    """Resolve `host` once; its addresses when every one is public.

    Raises OutboundRefusedError when it does not resolve or any address is not public.
    """
    try:
        addresses = await resolve(host, port)
    except OSError as exc:
        raise OutboundRefusedError(f"cannot resolve {host!r}") from exc
    if not addresses:
        raise OutboundRefusedError(f"{host!r} resolves to no address")
    for address in addresses:
        if not is_public(address):
            raise OutboundRefusedError(f"{host!r} resolves to the non-public address {address}")
    return addresses


class GuardedNetwork(httpcore.AsyncNetworkBackend):
    """httpcore's network, connecting only to checked public addresses (unless allowed)."""

    def __init__(
        self,
        *,
        allow_private: bool,
        resolve: Resolver = system_resolver,
        network: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._allow_private = allow_private
        self._resolve = resolve
        self._network = network or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Connect to `host`, or with private targets refused, to one of its checked addresses.

        Raises OutboundRefusedError for a refused target, httpcore.ConnectError when no
        address answers.
        """
        if self._allow_private:
            return await self._network.connect_tcp(
                host, port, timeout, local_address, socket_options
            )
        failure: httpcore.ConnectError | None = None
        for address in await public_addresses(host, port, self._resolve):
            try:
                return await self._network.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Never: a caller's URL names no socket file. Raises OutboundRefusedError."""
        raise OutboundRefusedError("unix sockets are not an outbound target")

    async def sleep(self, seconds: float) -> None:
        """As the wrapped network sleeps."""
        await self._network.sleep(seconds)


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport over a connection pool on a GuardedNetwork."""

    def __init__(
        self,
        network: GuardedNetwork,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits = httpx.Limits(),  # noqa: B008 - immutable
    ) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=verify if isinstance(verify, ssl.SSLContext) else _ssl(verify),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=network,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request through the pool (never following a redirect)."""
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            answer = await self._pool.handle_async_request(core)
        return httpx.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=_Body(answer),
            extensions=answer.extensions,
        )

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self._pool.aclose()


def client(
    *,
    allow_private: bool,
    timeout: httpx.Timeout | float,
    resolve: Resolver = system_resolver,
    network: httpcore.AsyncNetworkBackend | None = None,
    verify: ssl.SSLContext | bool = True,
) -> httpx.AsyncClient:
    """An HTTP client for callers' URLs: guarded connections, no redirects, no proxies
    from the environment (a proxy would connect on our behalf, unchecked)."""
    guarded = GuardedNetwork(allow_private=allow_private, resolve=resolve, network=network)
    return httpx.AsyncClient(
        transport=GuardedTransport(guarded, verify=verify),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )


class GuardedResolver(AbstractResolver):
    """aiohttp's name resolution under the policy: a name resolves to its checked public
    addresses, and aiohttp connects to exactly those."""

    def __init__(self, resolve: Resolver = system_resolver) -> None:
        self._resolve = resolve

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The checked addresses of `host`. Raises OutboundRefusedError (see
        `public_addresses`)."""
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in await public_addresses(host, port, self._resolve)
        ]

    async def close(self) -> None:
        """Nothing to release."""


def public_socket(
    addr_info: tuple[int, int, int, str, tuple[str, int] | tuple[str, int, int, int]],
) -> socket.socket:
    """A socket for a connection to a public address; the last check before connecting.

    aiohttp skips the resolver for a URL whose host is an IP address, so the address is
    checked here too. Raises OutboundRefusedError for a non-public address.
    """
    family, kind, proto, _, address = addr_info
    if not is_public(str(address[0])):
        raise OutboundRefusedError(f"the non-public address {address[0]} is not a target")
    return socket.socket(family, kind, proto)


def connector(
    *, allow_private: bool, limit: int, resolve: Resolver = system_resolver
) -> aiohttp.TCPConnector:
    """An aiohttp connector for callers' URLs: at most `limit` connections, kept alive,
    opened only to checked public addresses unless `allow_private`. Build it inside the
    event loop that uses it. Its sessions must not follow redirects (`allow_redirects=False`)
    nor read proxies from the environment (aiohttp's default)."""
    if allow_private:
        return aiohttp.TCPConnector(limit=limit)
    return aiohttp.TCPConnector(
        limit=limit, resolver=GuardedResolver(resolve), socket_factory=public_socket
    )


def _ssl(verify: bool) -> ssl.SSLContext:
    return httpx.create_ssl_context(verify=verify, trust_env=False)


class _Body(httpx.AsyncByteStream):
    def __init__(self, answer: httpcore.Response) -> None:
        self._answer = answer

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._answer.aiter_stream():
                yield part

    async def aclose(self) -> None:
        await self._answer.aclose()


# httpcore's errors as httpx raises them, most specific first.
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for theirs, ours in _ERRORS:
            if isinstance(exc, theirs):
                raise ours(str(exc)) from exc
        raise
