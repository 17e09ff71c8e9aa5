"""A tiny APNs-speaking HTTP/2 server over TLS, for driving the APNs adapter.

It checks the ALPN protocol and the provider JWT, records each request's headers and JSON
body, and answers 200 with `apns-id`, or APNs' error JSON in one DATA frame that ends the
stream (as Apple does). Devices in `silent` get no answer at all.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, RequestReceived, StreamEnded

from services.sandbox.emulators.tls import TLSFiles


@dataclass
class Received:
    headers: dict[str, str]
    body: Any
    alpn: str | None
    jwt_claims: dict[str, Any] | None
    jwt_header: dict[str, Any] | None


@dataclass
class FakeAPNs:
    key: ec.EllipticCurvePrivateKey
    received: list[Received] = field(default_factory=list)
    # status and JSON body by device token
    answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    silent: set[str] = field(default_factory=set)
    connections: int = 0
    port: int = 0


class _Protocol(asyncio.Protocol):
    def __init__(self, fake: FakeAPNs) -> None:
        self.fake = fake
        self.conn = H2Connection(config=H2Configuration(client_side=False))
        self.streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        self.transport: asyncio.Transport | None = None
        self.alpn: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.fake.connections += 1
        ssl_object = transport.get_extra_info("ssl_object")
        self.alpn = ssl_object.selected_alpn_protocol() if ssl_object else None
        self.conn.initiate_connection()
        transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            if isinstance(event, RequestReceived):
                headers = {
                    (k.decode() if isinstance(k, bytes) else k): (
                        v.decode() if isinstance(v, bytes) else v
                    )
                    for k, v in event.headers or []
                }
                self.streams[event.stream_id] = (headers, bytearray())
            elif isinstance(event, DataReceived):
                self.streams[event.stream_id][1].extend(event.data or b"")
                self.conn.acknowledge_received_data(
                    event.flow_controlled_length or 0, event.stream_id
                )
            elif isinstance(event, StreamEnded):
                self.answer(event.stream_id)
        assert self.transport is not None
        self.transport.write(self.conn.data_to_send())

    def answer(self, stream_id: int | None) -> None:
        assert stream_id is not None
        headers, body = self.streams.pop(stream_id)
        claims = header = None
        authorization = headers.get("authorization", "")
        if authorization.startswith("bearer "):
            token = authorization.removeprefix("bearer ")
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, self.fake.key.public_key(), algorithms=["ES256"])
        self.fake.received.append(Received(headers, json.loads(body), self.alpn, claims, header))
        device = headers[":path"].rsplit("/", 1)[-1]
        if device in self.fake.silent:
            return
        status, error = self.fake.answers.get(device, (200, {}))
        apns_id = headers.get("apns-id", "")
        self.conn.send_headers(
            stream_id, [(":status", str(status)), ("apns-id", apns_id)], end_stream=not error
        )
        if error:
            self.conn.send_data(stream_id, json.dumps(error).encode(), end_stream=True)


async def start_apns(fake: FakeAPNs, tls: TLSFiles) -> asyncio.Server:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    context.set_alpn_protocols(["h2"])
    server = await asyncio.get_running_loop().create_server(
        lambda: _Protocol(fake), "127.0.0.1", 0, ssl=context
    )
    fake.port = server.sockets[0].getsockname()[1]
    return server
