"""The APNs emulator driven by aioapns 4.0, the client the sender uses."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import httpx
import jwt
import pytest
from aioapns import APNs, NotificationRequest, PushType
from cryptography.hazmat.primitives.asymmetric import ec

from services.sandbox.emulators.apns import TOKEN_MAX_AGE, APNSEmulator
from services.sandbox.emulators.keys import pkcs8_pem
from services.sandbox.emulators.runner import EmulatorThread
from services.sandbox.emulators.state import TokenState
from tests.integration.emulators.apple import apns_client, close_client
from tests.integration.emulators.forgery import tampered

TOKEN = "ab" * 32


@pytest.fixture
def apns(tmp_path: Path) -> Iterator[APNSEmulator]:
    emulator = APNSEmulator(cert_dir=tmp_path / "tls")
    with EmulatorThread(emulator):
        yield emulator


@pytest.fixture
async def client(apns: APNSEmulator) -> AsyncIterator[APNs]:
    client = apns_client(apns)
    yield client
    await close_client(client)


async def test_a_notification_is_delivered_with_its_headers_and_payload(
    apns: APNSEmulator, client: APNs
) -> None:
    message = {"aps": {"alert": {"title": "Hi", "body": "there"}, "mutable-content": 1}, "k": "v"}
    request = NotificationRequest(
        device_token=TOKEN,
        message=message,
        priority=10,
        time_to_live=60,
        collapse_key="news",
        push_type=PushType.ALERT,
    )
    result = await client.send_notification(request)
    assert (result.status, result.description) == ("200", None)
    assert result.notification_id == request.notification_id
    (record,) = apns.controls.records()
    assert (record.target, record.status, record.reason) == (TOKEN, 200, None)
    assert record.payload == message
    assert record.headers["apns-topic"] == "com.example.pushline"
    assert record.headers["apns-priority"] == "10"
    assert record.headers["apns-collapse-id"] == "news"
    assert record.headers["apns-push-type"] == "alert"
    assert record.headers["apns-id"] == request.notification_id
    assert record.headers["apns-expiration"].isdigit()


async def test_unregistered_comes_back_with_its_timestamp(apns: APNSEmulator, client: APNs) -> None:
    apns.controls.mark([TOKEN], TokenState.UNREGISTERED, at_ms=1_700_000_000_123)
    result = await client.send_notification(NotificationRequest(TOKEN, {"aps": {}}))
    assert (result.status, result.description, result.timestamp) == (
        "410",
        "Unregistered",
        1_700_000_000_123,
    )


@pytest.mark.parametrize("token", ["not-a-token", "ab" * 31, "zz" * 32])
async def test_a_malformed_token_is_a_bad_device_token(client: APNs, token: str) -> None:
    result = await client.send_notification(NotificationRequest(token, {"aps": {}}))
    assert (result.status, result.description) == ("400", "BadDeviceToken")


async def test_a_token_marked_invalid_is_a_bad_device_token(
    apns: APNSEmulator, client: APNs
) -> None:
    apns.controls.mark([TOKEN], TokenState.INVALID)
    result = await client.send_notification(NotificationRequest(TOKEN, {"aps": {}}))
    assert (result.status, result.description) == ("400", "BadDeviceToken")
    apns.controls.mark([TOKEN], TokenState.ACTIVE)
    result = await client.send_notification(NotificationRequest(TOKEN, {"aps": {}}))
    assert result.status == "200"


async def test_injected_faults_fail_the_requested_share(apns: APNSEmulator, client: APNs) -> None:
    apns.controls.fail(429, share=0.5, count=2)
    results = [
        await client.send_notification(NotificationRequest(TOKEN, {"aps": {}})) for _ in range(6)
    ]
    assert [(r.status, r.description) for r in results] == [
        ("200", None),
        ("429", "TooManyRequests"),
        ("200", None),
        ("429", "TooManyRequests"),
        ("200", None),
        ("200", None),
    ]
    apns.controls.fail(503)
    result = await client.send_notification(NotificationRequest(TOKEN, {"aps": {}}))
    assert (result.status, result.description) == ("503", "ServiceUnavailable")


async def test_a_token_signed_with_another_key_is_refused(apns: APNSEmulator) -> None:
    other = pkcs8_pem(ec.generate_private_key(ec.SECP256R1()))
    for client in (apns_client(apns, key=other), apns_client(apns, key_id="OTHERKEY01")):
        try:
            result = await client.send_notification(NotificationRequest(TOKEN, {"aps": {}}))
        finally:
            await close_client(client)
        assert (result.status, result.description) == ("403", "InvalidProviderToken")
    assert [r.reason for r in apns.controls.records()] == ["InvalidProviderToken"] * 2


async def test_the_topic_must_be_the_apps(client: APNs) -> None:
    request = NotificationRequest(TOKEN, {"aps": {}}, apns_topic="com.example.other")
    result = await client.send_notification(request)
    assert (result.status, result.description) == ("400", "DeviceTokenNotForTopic")


async def test_an_oversized_payload_is_refused(client: APNs) -> None:
    request = NotificationRequest(TOKEN, {"aps": {"alert": "x" * 4100}})
    result = await client.send_notification(request)
    assert (result.status, result.description) == ("413", "PayloadTooLarge")


async def test_many_concurrent_streams_on_one_connection(apns: APNSEmulator, client: APNs) -> None:
    tokens = [f"{i:064x}" for i in range(300)]
    apns.controls.mark(tokens[::3], TokenState.UNREGISTERED)
    results = await asyncio.gather(
        *(client.send_notification(NotificationRequest(t, {"aps": {}})) for t in tokens)
    )
    statuses = [r.status for r in results]
    assert statuses.count("410") == 100
    assert statuses.count("200") == 200
    # The record is larger than HTTP/2's initial 64 KiB window: the server has to wait for
    # the client's window updates to send it.
    context = ssl.create_default_context(cafile=str(apns.tls.ca_file))
    async with httpx.AsyncClient(http2=True, verify=context, base_url=apns.url) as control:
        answer = await control.get("/_emulator/records")
    assert len(answer.content) > 65_535
    assert sorted(r["target"] for r in answer.json()["records"]) == sorted(tokens)


async def test_the_control_api_answers_over_http2(apns: APNSEmulator, client: APNs) -> None:
    async with httpx.AsyncClient(
        http2=True,
        verify=ssl.create_default_context(cafile=str(apns.tls.ca_file)),
        base_url=apns.url,
    ) as control:
        marked = await control.post(
            "/_emulator/tokens", json={"tokens": [TOKEN], "state": "unregistered"}
        )
        assert marked.status_code == 200
        assert marked.http_version == "HTTP/2"
        result = await client.send_notification(NotificationRequest(TOKEN, {"aps": {"x": 1}}))
        assert result.description == "Unregistered"
        records = (await control.get("/_emulator/records")).json()["records"]
        assert [(r["status"], r["reason"], r["payload"]) for r in records] == [
            (410, "Unregistered", {"aps": {"x": 1}})
        ]
        config = (await control.get("/_emulator/config")).json()
        assert config["key"] == apns.key_pem
        assert config["ca_file"] == str(apns.tls.ca_file)
        bad = await control.post("/_emulator/faults", json={"status": 418})
        assert bad.status_code == 400


async def test_provider_token_and_header_checks_over_raw_http2(apns: APNSEmulator) -> None:
    now = int(time.time())

    def bearer(iat: int) -> str:
        token = jwt.encode(
            {"iss": apns.team_id, "iat": iat},
            apns.key_pem,
            algorithm="ES256",
            headers={"kid": apns.key_id},
        )
        return f"bearer {token}"

    topic = {"apns-topic": apns.topics[0]}
    cases = [
        ({**topic}, 403, "MissingProviderToken"),
        ({**topic, "authorization": bearer(now - 7200)}, 403, "ExpiredProviderToken"),
        ({**topic, "authorization": "bearer not.a.jwt"}, 403, "InvalidProviderToken"),
        ({"authorization": bearer(now)}, 400, "MissingTopic"),
        ({**topic, "authorization": bearer(now), "apns-priority": "7"}, 400, "BadPriority"),
        ({**topic, "authorization": bearer(now), "apns-id": "nope"}, 400, "BadMessageId"),
    ]
    context = ssl.create_default_context(cafile=str(apns.tls.ca_file))
    async with httpx.AsyncClient(http2=True, verify=context, base_url=apns.url) as client:
        for headers, status, reason in cases:
            answer = await client.post(f"/3/device/{TOKEN}", headers=headers, content=b"{}")
            assert (answer.status_code, answer.json()) == (status, {"reason": reason}), headers
            assert answer.headers["apns-id"]
        empty = await client.post(
            f"/3/device/{TOKEN}", headers={**topic, "authorization": bearer(now)}
        )
        assert (empty.status_code, empty.json()) == (400, {"reason": "PayloadEmpty"})
        wrong_method = await client.get(f"/3/device/{TOKEN}")
        assert (wrong_method.status_code, wrong_method.json()) == (
            405,
            {"reason": "MethodNotAllowed"},
        )


def _provider_token(apns: APNSEmulator, iat: int, key: str | None = None) -> str:
    return jwt.encode(
        {"iss": apns.team_id, "iat": iat},
        key or apns.key_pem,
        algorithm="ES256",
        headers={"kid": apns.key_id},
    )


async def _reasons(apns: APNSEmulator, tokens: list[str]) -> list[str | None]:
    """APNs' answer to one notification per provider token, in order."""
    context = ssl.create_default_context(cafile=str(apns.tls.ca_file))
    reasons: list[str | None] = []
    async with httpx.AsyncClient(http2=True, verify=context, base_url=apns.url) as client:
        for token in tokens:
            answer = await client.post(
                f"/3/device/{TOKEN}",
                headers={"apns-topic": apns.topics[0], "authorization": f"bearer {token}"},
                content=b'{"aps": {}}',
            )
            reasons.append(None if answer.status_code == 200 else answer.json()["reason"])
    return reasons


async def test_a_verified_provider_token_still_expires(apns: APNSEmulator) -> None:
    # Valid for two to three more seconds: verified once, then found, then too old.
    iat = int(time.time()) - TOKEN_MAX_AGE + 3
    token = _provider_token(apns, iat)
    assert await _reasons(apns, [token, token]) == [None, None]
    await asyncio.sleep(max(0.0, iat + TOKEN_MAX_AGE + 0.2 - time.time()))
    assert await _reasons(apns, [token]) == ["ExpiredProviderToken"]


async def test_only_the_exact_verified_token_skips_verification(apns: APNSEmulator) -> None:
    now = int(time.time())
    good = _provider_token(apns, now)
    other_key = pkcs8_pem(ec.generate_private_key(ec.SECP256R1()))
    forged = _provider_token(apns, now, key=other_key)
    fresh = _provider_token(apns, now - 1)
    assert await _reasons(apns, [good, tampered(good), forged, good, fresh]) == [
        None,
        "InvalidProviderToken",
        "InvalidProviderToken",
        None,
        None,
    ]


async def test_latency_delays_each_answer_without_queueing_them(
    apns: APNSEmulator, client: APNs
) -> None:
    apns.controls.slow_down(0.3)
    started = time.monotonic()
    results = await asyncio.gather(
        *(
            client.send_notification(NotificationRequest(f"{i:064x}", {"aps": {}}))
            for i in range(20)
        )
    )
    elapsed = time.monotonic() - started
    assert [r.status for r in results] == ["200"] * 20
    assert 0.3 <= elapsed < 2.0


async def test_a_stream_reset_before_its_delayed_answer_leaves_the_connection_serving(
    apns: APNSEmulator,
) -> None:
    apns.controls.slow_down(0.3)
    context = ssl.create_default_context(cafile=str(apns.tls.ca_file))
    context.set_alpn_protocols(["h2"])
    reader, writer = await asyncio.open_connection(apns.host, apns.port, ssl=context)
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    connection.initiate_connection()
    headers = [
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", apns.host),
        (":path", f"/3/device/{TOKEN}"),
        ("apns-topic", apns.topics[0]),
        ("authorization", f"bearer {_provider_token(apns, int(time.time()))}"),
    ]
    for stream_id in (1, 3):
        connection.send_headers(stream_id, headers)
        connection.send_data(stream_id, b'{"aps": {}}', end_stream=True)
    connection.reset_stream(1)
    writer.write(connection.data_to_send())
    answered: dict[int, str] = {}

    async def read(seconds: float) -> None:
        data = await asyncio.wait_for(reader.read(65_536), seconds)
        assert data, "the emulator closed the connection"
        for event in connection.receive_data(data):
            assert not isinstance(event, h2.events.ConnectionTerminated)
            if isinstance(event, h2.events.ResponseReceived):
                assert event.stream_id is not None
                assert event.headers is not None
                answered[event.stream_id] = dict(event.headers)[b":status"].decode()
        writer.write(connection.data_to_send())

    try:
        while 3 not in answered:
            await read(5)
        # Whatever else comes until stream 1's answer would have been due.
        deadline = time.monotonic() + 0.6
        while (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                await read(left)
    finally:
        writer.close()
        await writer.wait_closed()
    assert answered == {3: "200"}
