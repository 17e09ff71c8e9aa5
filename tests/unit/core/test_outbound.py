"""The outbound policy, checked where connections open.

The network under test is a fake at the socket boundary: it connects a public address the
test names to a local server, resolving names (as the operating system would) with the
test's resolver, so DNS rebinding can be played out without leaving this machine.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpcore
import httpx
import pytest
from aiohttp import web

from services.core import outbound
from services.core.errors import OutboundRefusedError
from services.core.events import WebhookCall
from services.feedback.webhooks import WebhookSender
from services.sandbox.emulators.tls import certificates

PUBLIC = "93.184.216.34"


@dataclass
class Server:
    """A local HTTP server that counts the requests each path got."""

    port: int = 0
    hits: dict[str, int] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)
    redirects: dict[str, str] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.Response:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        self.hosts.append(request.headers["Host"])
        target = self.redirects.get(request.path)
        if target is not None:
            return web.Response(status=302, headers={"Location": target})
        return web.Response(text="ok")


async def serve(
    server: Server, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1", port: int = 0
) -> web.AppRunner:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=tls)
    await site.start()
    server.port = runner.addresses[0][1]
    return runner


@pytest.fixture
async def public() -> AsyncIterator[Server]:
    """What PUBLIC leads to."""
    server = Server()
    runner = await serve(server)
    yield server
    await runner.cleanup()


@pytest.fixture
async def private() -> AsyncIterator[Server]:
    """An internal service on loopback that no caller's URL may reach."""
    server = Server()
    runner = await serve(server)
    yield server
    await runner.cleanup()


class Resolver:
    """Answers from a script, one answer per call, the last one repeated."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls += 1
        try:
            ipaddress.ip_address(host)
            return [host]
        except ValueError:
            return self.answers[min(self.calls, len(self.answers)) - 1]


class Network(httpcore.AsyncNetworkBackend):
    """PUBLIC goes to `public`'s port; any other address to itself (loopback is real)."""

    def __init__(self, resolve: outbound.Resolver, public_port: int) -> None:
        self._resolve = resolve
        self._public_port = public_port
        self._real = httpcore.AnyIOBackend()
        self.asked: list[tuple[str, int]] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.asked.append((host, port))
        address = (await self._resolve(host, port))[0]
        if address == PUBLIC:
            return await self._real.connect_tcp("127.0.0.1", self._public_port, timeout)
        return await self._real.connect_tcp(address, port, timeout)

    async def sleep(self, seconds: float) -> None:
        await self._real.sleep(seconds)


def guarded(
    resolve: outbound.Resolver, network: Network, verify: ssl.SSLContext | bool = True
) -> httpx.AsyncClient:
    return outbound.client(
        allow_private=False,
        timeout=5.0,
        resolve=resolve,
        network=network,
        verify=verify,
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:{port}/hook",
        "http://127.0.0.1:{port}/hook",
        "http://[::1]:{port}/hook",
        "http://[::ffff:127.0.0.1]:{port}/hook",
        "http://10.1.2.3/hook",
        "http://172.16.0.1/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00::1]/hook",
        "http://0.0.0.0:{port}/hook",
        "http://100.64.0.1/hook",
        "http://224.0.0.1/hook",
    ],
)
async def test_non_public_targets_are_refused_without_connecting(private: Server, url: str) -> None:
    network = Network(outbound.system_resolver, 0)
    async with guarded(outbound.system_resolver, network) as client:
        with pytest.raises(OutboundRefusedError, match="non-public"):
            await client.get(url.format(port=private.port))
    assert network.asked == []
    assert private.hits == {}


async def test_a_name_that_resolves_to_loopback_is_refused(private: Server) -> None:
    resolve = Resolver(["127.0.0.1"])
    network = Network(resolve, 0)
    async with guarded(resolve, network) as client:
        with pytest.raises(OutboundRefusedError, match=r"127\.0\.0\.1"):
            await client.get(f"http://hooks.example:{private.port}/hook")
    assert network.asked == []
    assert private.hits == {}


async def test_rebinding_after_the_check_cannot_reach_a_private_address(
    public: Server, private: Server
) -> None:
    # Public when checked, loopback for whoever asks next.
    resolve = Resolver([PUBLIC], ["127.0.0.1"])
    network = Network(resolve, public.port)
    async with guarded(resolve, network) as client:
        response = await client.get(f"http://rebind.example:{private.port}/hook")
    assert response.status_code == 200
    assert network.asked == [(PUBLIC, private.port)]
    assert public.hits == {"/hook": 1}
    assert private.hits == {}
    # The Host header is still the URL's.
    assert public.hosts == [f"rebind.example:{private.port}"]


async def test_redirects_are_not_followed(public: Server, private: Server) -> None:
    public.redirects = {
        "/to-private": f"http://127.0.0.1:{private.port}/hook",
        "/to-public": "http://elsewhere.example/hook",
    }
    resolve = Resolver([PUBLIC])
    network = Network(resolve, public.port)
    async with guarded(resolve, network) as client:
        for path in public.redirects:
            response = await client.post(f"http://hooks.example{path}", json={})
            assert response.status_code == 302
        sender = WebhookSender(client)
        call = WebhookCall(webhook_id="w1", url="http://hooks.example/to-private", body={})
        assert await sender.deliver(call) == "failed"
    assert private.hits == {}
    assert "/hook" not in public.hits


async def test_webhooks_to_private_targets_are_refused(private: Server) -> None:
    resolve = Resolver(["10.0.0.7"])
    network = Network(resolve, 0)
    async with guarded(resolve, network) as client:
        sender = WebhookSender(client)
        for url in (f"http://127.0.0.1:{private.port}/hook", "http://internal.example/hook"):
            call = WebhookCall(webhook_id="w1", url=url, body={})
            assert await sender.deliver(call) == "refused"
    assert network.asked == []
    assert private.hits == {}


async def test_tls_verifies_and_names_the_urls_host_not_the_address(
    public: Server, tmp_path: Path
) -> None:
    # The certificate is for "localhost"; the connection goes to PUBLIC, checked.
    files = certificates(tmp_path)
    tls_server = Server()
    runner = await serve(tls_server, files.server_context(["http/1.1"]))
    try:
        resolve = Resolver([PUBLIC])
        network = Network(resolve, tls_server.port)
        trust = ssl.create_default_context(cafile=str(files.ca_file))
        async with guarded(resolve, network, verify=trust) as client:
            response = await client.get(f"https://localhost:{tls_server.port}/hook")
        assert response.status_code == 200
        assert network.asked == [(PUBLIC, tls_server.port)]
        assert tls_server.hosts == [f"localhost:{tls_server.port}"]
    finally:
        await runner.cleanup()


async def test_the_operator_may_allow_private_targets(private: Server) -> None:
    async with outbound.client(allow_private=True, timeout=5.0) as client:
        response = await client.get(f"http://127.0.0.1:{private.port}/hook")
    assert response.status_code == 200
    assert private.hits == {"/hook": 1}


def test_public_addresses() -> None:
    assert outbound.is_public("8.8.8.8")
    assert outbound.is_public("2606:4700:4700::1111")
    for address in ("127.0.0.1", "::1", "10.0.0.1", "169.254.169.254", "fe80::1%eth0", "ff02::1"):
        assert not outbound.is_public(address)


@pytest.mark.parametrize(
    "address",
    [
        # IPv4 special-purpose ranges (IANA) that Python's is_global lets through or that
        # are easy to miss.
        "192.0.0.8",  # IPv4 dummy address
        "192.0.0.9",  # PCP anycast
        "192.0.0.170",  # NAT64 discovery
        "192.31.196.1",  # AS112-v4
        "192.52.193.1",  # AMT
        "192.88.99.1",  # 6to4 relay anycast
        "192.175.48.1",  # AS112 direct delegation
        "198.18.0.1",  # benchmarking
        "192.0.2.1",
        "198.51.100.1",
        "203.0.113.1",
        "240.0.0.1",
        "255.255.255.255",
        "0.0.0.0",
        # IPv4 embedded in IPv6: each leads to 169.254.169.254 or 127.0.0.1.
        "64:ff9b::a9fe:a9fe",  # NAT64 well-known prefix
        "64:ff9b::127.0.0.1",
        "2002:a9fe:a9fe::1",  # 6to4
        "2002:7f00:1::",
        "::127.0.0.1",  # IPv4-compatible
        "::a9fe:a9fe",
        "::ffff:169.254.169.254",  # IPv4-mapped
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1 (obfuscated)
        "2001:0:a00:1::f7f7:f7f7",  # Teredo, server 10.0.0.1 (client 8.8.8.8)
        # IPv6 special-purpose ranges.
        "::",
        "64:ff9b:1::808:808",  # NAT64 local use
        "100::1",  # discard-only
        "2001:2::1",  # benchmarking
        "2001:1::1",  # PCP anycast
        "2001:20::1",  # ORCHIDv2
        "2001:db8::1",
        "3fff::1",
        "2620:4f:8000::1",
        "5f00::1",
        "fc00::1",
        "fec0::1",  # site local (deprecated)
        "::ffff:0:7f00:1",  # IPv4-translated, outside global unicast
        "4000::1",  # unallocated
    ],
)
def test_special_purpose_and_embedded_private_addresses_are_not_public(address: str) -> None:
    assert not outbound.is_public(address)


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::808:808",  # NAT64 of 8.8.8.8, as DNS64 synthesises it
        "2002:808:808::1",  # 6to4 of 8.8.8.8
        "::ffff:8.8.8.8",
        "2001:0:5ef5:79fd:0:59d:f7f7:f7f7",  # Teredo: server 94.245.121.253, client 8.8.8.8
        "2a00:1450:4001:80b::200e",
        "1.1.1.1",
        "192.0.1.1",  # just outside 192.0.0.0/24
    ],
)
def test_public_addresses_stay_public_however_written(address: str) -> None:
    assert outbound.is_public(address)


def guarded_session(resolve: outbound.Resolver) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=outbound.connector(allow_private=False, limit=4, resolve=resolve)
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:{port}/hook",
        "http://127.0.0.1:{port}/hook",
        "http://[::1]:{port}/hook",
        "http://[::ffff:127.0.0.1]:{port}/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0:{port}/hook",
    ],
)
async def test_the_aiohttp_connector_refuses_non_public_targets(private: Server, url: str) -> None:
    async with guarded_session(outbound.system_resolver) as session:
        with pytest.raises(OutboundRefusedError, match="non-public"):
            await session.get(url.format(port=private.port))
    assert private.hits == {}


async def test_the_aiohttp_connector_connects_to_the_checked_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No public address answers on this machine: 127.0.0.2 plays one (the policy is told
    # so), 127.0.0.1 stays private. The name is public when checked, loopback after.
    monkeypatch.setattr(outbound, "is_public", lambda address: address == "127.0.0.2")
    public, private = Server(), Server()
    public_runner = await serve(public, host="127.0.0.2")
    private_runner = await serve(private, port=public.port)
    resolve = Resolver(["127.0.0.2"], ["127.0.0.1"])
    url = f"http://rebind.example:{public.port}/hook"
    try:
        async with guarded_session(resolve) as session:
            async with session.post(url, allow_redirects=False) as response:
                assert response.status == 200
            with pytest.raises(OutboundRefusedError):
                await session.get(f"http://127.0.0.1:{public.port}/hook")
    finally:
        await public_runner.cleanup()
        await private_runner.cleanup()
    # One resolution, checked, and the connection went to what it checked.
    assert resolve.calls == 1
    assert public.hits == {"/hook": 1}
    assert private.hits == {}
    assert public.hosts == [f"rebind.example:{public.port}"]


async def test_the_aiohttp_connector_may_reach_private_targets_when_allowed(
    private: Server,
) -> None:
    connector = outbound.connector(allow_private=True, limit=4)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(f"http://127.0.0.1:{private.port}/hook") as response,
    ):
        assert response.status == 200
    assert private.hits == {"/hook": 1}


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_the_aiohttp_connector_reaches_only_the_private_targets_it_names(
    private: Server, public: Server, host: str
) -> None:
    # `public` plays another internal service on loopback: not named, so refused.
    connector = outbound.connector(
        allow_private=False, limit=4, targets=[outbound.host_port(host, private.port)]
    )
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(f"http://{host}:{private.port}/hook") as response:
            assert response.status == 200
        with pytest.raises(OutboundRefusedError, match="non-public"):
            await session.get(f"http://{host}:{public.port}/hook")
        with pytest.raises(OutboundRefusedError, match="non-public"):
            await session.get(f"http://10.1.2.3:{private.port}/hook")
    assert private.hits == {"/hook": 1}
    assert public.hits == {}
