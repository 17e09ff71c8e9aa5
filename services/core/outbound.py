"""Where Pushline may connect on a caller's behalf (webhooks, Web Push endpoints).

A URL a caller gave us must not make Pushline reach loopback, private, link-local,
metadata or multicast addresses, unless the operator allows it
(`PUSHLINE_WEBHOOK_ALLOW_PRIVATE`), or the URL's host:port is one a client was built to
allow (a sandbox app's Web Push emulator, `PUSHLINE_WEBPUSH_PRIVATE_TARGETS`). The check
happens when a connection is opened, inside the HTTP transport: the host is resolved once,
every address it resolves to must be public, and the connection goes to exactly such an
address. A name that resolves to a public address when checked and to a private one a
moment later (DNS rebinding) therefore cannot steer the connection. TLS still verifies, and
sends as SNI, the URL's host name; the `Host` header is the URL's. Redirects are never
followed: the clients built here return a 3xx as it is.

Two transports carry the policy: `client()`, an httpx client (webhooks), and `connector()`,
an aiohttp connector (Web Push, whose volume needs aiohttp's lower cost per request).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from typing import Final

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


# The IANA special-purpose address registries (iana-ipv4-special-registry and
# iana-ipv6-special-registry, as of 2025), plus multicast. None of them is a push service or
# a webhook receiver: every one is refused, even the few the registry calls globally
# reachable (anycast relays, AS112), since a caller's URL has no business there.
_SPECIAL_V4: Final = tuple(
    ipaddress.IPv4Network(network)
    for network in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",  # private use
        "100.64.0.0/10",  # shared address space (carrier-grade NAT)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link local, cloud metadata
        "172.16.0.0/12",  # private use
        "192.0.0.0/24",  # IETF protocol assignments (DS-Lite, dummy 192.0.0.8, anycast)
        "192.0.2.0/24",  # documentation
        "192.31.196.0/24",  # AS112-v4
        "192.52.193.0/24",  # AMT
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated), 6a44
        "192.168.0.0/16",  # private use
        "192.175.48.0/24",  # AS112 direct delegation
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and 255.255.255.255 limited broadcast
    )
)
# Only 2000::/3 is global unicast: the rest (loopback, unspecified, NAT64 local use
# 64:ff9b:1::/48, discard 100::/64, segment routing 5f00::/16, unique local fc00::/7, link
# local fe80::/10, multicast ff00::/8, unallocated space) is refused whole. Inside it, these
# are special-purpose; 6to4 (2002::/16) and Teredo (2001::/32) are judged by their IPv4.
_GLOBAL_UNICAST_V6: Final = ipaddress.IPv6Network("2000::/3")
_SPECIAL_V6: Final = tuple(
    ipaddress.IPv6Network(network)
    for network in (
        "2001::/23",  # IETF protocol assignments (benchmarking, AMT, AS112, ORCHID, ...)
        "2001:db8::/32",  # documentation
        "2620:4f:8000::/48",  # AS112 direct delegation
        "3fff::/20",  # documentation (RFC 9637)
    )
)
# Forms that carry an IPv4 address in their last 32 bits and reach it when connected to.
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE: Final = ipaddress.IPv6Network("::/96")


def is_public(address: str) -> bool:
    """Whether an IP address is globally routable unicast, outside every special-purpose
    range. An IPv6 form that embeds an IPv4 address (IPv4-mapped, NAT64 64:ff9b::/96,
    6to4, Teredo, IPv4-compatible) is public only when the IPv4 address it leads to is.

    Raises ValueError for a string that is not an IP address.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv4Address):
        return _public_v4(ip)
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        return all(_public_v4(v4) for v4 in embedded)
    return ip in _GLOBAL_UNICAST_V6 and not any(ip in network for network in _SPECIAL_V6)


def _public_v4(ip: ipaddress.IPv4Address) -> bool:
    return not any(ip in network for network in _SPECIAL_V4)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...] | None:
    # Teredo reaches its server and the client's (obfuscated) NAT address: both must be public.
    if ip.teredo is not None:
        return ip.teredo
    for v4 in (ip.ipv4_mapped, ip.sixtofour):
        if v4 is not None:
            return (v4,)
    if ip in _NAT64 or ip in _IPV4_COMPATIBLE:
        return (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF),)
    return None


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


def host_port(host: str, port: int) -> str:
    """`host:port` as settings write it: lower case, an IPv6 address in brackets."""
    host = host.lower()
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class GuardedNetwork(httpcore.AsyncNetworkBackend):
    """httpcore's network, connecting only to checked public addresses (unless allowed:
    every target with `allow_private`, else only the `host_port` strings in `targets`)."""

    def __init__(
        self,
        *,
        allow_private: bool,
        targets: Collection[str] = (),
        resolve: Resolver = system_resolver,
        network: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._allow_private = allow_private
        self._targets = frozenset(targets)
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
        if self._allow_private or host_port(host, port) in self._targets:
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
    targets: Collection[str] = (),
    resolve: Resolver = system_resolver,
    network: httpcore.AsyncNetworkBackend | None = None,
    verify: ssl.SSLContext | bool = True,
) -> httpx.AsyncClient:
    """An HTTP client for callers' URLs: guarded connections (private ones only with
    `allow_private` or to the `host_port` strings in `targets`), no redirects, no proxies
    from the environment (a proxy would connect on our behalf, unchecked)."""
    guarded = GuardedNetwork(
        allow_private=allow_private, targets=targets, resolve=resolve, network=network
    )
    return httpx.AsyncClient(
        transport=GuardedTransport(guarded, verify=verify),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )


class GuardedResolver(AbstractResolver):
    """aiohttp's name resolution under the policy: a name resolves to its checked public
    addresses, and aiohttp connects to exactly those. A `host_port` in `targets` resolves
    unchecked, and its addresses are remembered in `allowed` for `GuardedSockets`."""

    def __init__(
        self, resolve: Resolver = system_resolver, *, targets: Collection[str] = ()
    ) -> None:
        self._resolve = resolve
        self._targets = frozenset(targets)
        # Resolved addresses of allowed targets, as `host_port` strings: what a socket
        # to a private address may connect to.
        self.allowed: set[str] = set(self._targets)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The checked addresses of `host`. Raises OutboundRefusedError (see
        `public_addresses`)."""
        if host_port(host, port) in self._targets:
            addresses = await self._resolve(host, port)
            self.allowed.update(host_port(address, port) for address in addresses)
        else:
            addresses = await public_addresses(host, port, self._resolve)
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        """Nothing to release."""


class GuardedSockets:
    """The connector's socket factory: the last check before connecting. aiohttp skips the
    resolver for a URL whose host is an IP address, so the address is checked here too."""

    def __init__(self, resolver: GuardedResolver) -> None:
        self._resolver = resolver

    def __call__(
        self,
        addr_info: tuple[int, int, int, str, tuple[str, int] | tuple[str, int, int, int]],
    ) -> socket.socket:
        """A socket for a public address or an allowed target. Raises OutboundRefusedError
        for any other address."""
        family, kind, proto, _, address = addr_info
        host, port = str(address[0]), int(address[1])
        if not is_public(host) and host_port(host, port) not in self._resolver.allowed:
            raise OutboundRefusedError(f"the non-public address {host} is not a target")
        return socket.socket(family, kind, proto)


def connector(
    *,
    allow_private: bool,
    limit: int,
    targets: Collection[str] = (),
    resolve: Resolver = system_resolver,
) -> aiohttp.TCPConnector:
    """An aiohttp connector for callers' URLs: at most `limit` connections, kept alive,
    opened only to checked public addresses (private ones only with `allow_private` or to
    the `host_port` strings in `targets`). Build it inside the event loop that uses it. Its
    sessions must not follow redirects (`allow_redirects=False`) nor read proxies from the
    environment (aiohttp's default)."""
    if allow_private:
        return aiohttp.TCPConnector(limit=limit)
    resolver = GuardedResolver(resolve, targets=targets)
    return aiohttp.TCPConnector(
        limit=limit, resolver=resolver, socket_factory=GuardedSockets(resolver)
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
