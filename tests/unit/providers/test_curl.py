"""libcurl's multi interface on the event loop, against the test's HTTP/2 + TLS server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from services.core.providers import curl
from services.sandbox.emulators.tls import TLSFiles, certificates
from tests.unit.providers.apns_server import FakeAPNs, start_apns

BODY = b'{"aps":{"alert":"hi"}}'


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return certificates(tmp_path_factory.mktemp("curl-tls"))


@pytest.fixture
async def server(tls: TLSFiles) -> AsyncIterator[FakeAPNs]:
    fake = FakeAPNs(key=ec.generate_private_key(ec.SECP256R1()))
    listening = await start_apns(fake, tls)
    try:
        yield fake
    finally:
        listening.close()
        await listening.wait_closed()


@pytest.fixture
async def multi(tls: TLSFiles) -> AsyncIterator[curl.Multi]:
    client = curl.Multi(tls.ca_file.read_bytes(), connections=2, timeout=5.0)
    try:
        yield client
    finally:
        client.close()


async def test_a_caller_that_posts_again_at_once_does_not_take_another_caller_s_transfer(
    server: FakeAPNs, multi: curl.Multi
) -> None:
    # Answers that arrive together finish their transfers in one go; the first caller to
    # resume posts again on a handle whose previous caller has not resumed yet.
    url = f"https://127.0.0.1:{server.port}/3/device/{'a' * 64}"

    async def caller() -> list[int]:
        return [(await multi.post(url, [], BODY)).status for _ in range(10)]

    statuses = await asyncio.wait_for(asyncio.gather(*(caller() for _ in range(32))), 20)
    assert [s for each in statuses for s in each] == [200] * 320
    assert server.connections == 1


async def test_no_answer_is_a_timeout_and_refused_connections_say_so(
    server: FakeAPNs, tls: TLSFiles
) -> None:
    server.silent.add("b" * 64)
    client = curl.Multi(tls.ca_file.read_bytes(), connections=1, timeout=0.3)
    try:
        with pytest.raises(curl.TransferError) as caught:
            await client.post(f"https://127.0.0.1:{server.port}/3/device/{'b' * 64}", [], BODY)
        assert caught.value.reason == "Timeout"
        with pytest.raises(curl.TransferError) as caught:
            await client.post("https://127.0.0.1:9/3/device/x", [], BODY)
        assert caught.value.reason == "ConnectionRefused"
    finally:
        client.close()
