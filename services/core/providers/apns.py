"""APNs through aioapns: token (.p8 JWT) auth over HTTP/2 and TLS.

aioapns takes the host and port from class attributes of its protocol classes
(`APNS_SERVER`, `APNS_PORT`); this adapter sets a subclass carrying the endpoint as the
pool's `protocol_class`, with an `ssl_context` that also trusts `PUSHLINE_APNS_CA_FILE` and
offers ALPN `h2`. aioapns answers every request with a `NotificationResult(status,
description, timestamp)`; it raises only when it cannot get a connection (after
`max_connection_attempts`, each followed by a 1 s sleep), which this adapter limits to one
attempt so the sender's retry policy stays the only one. It waits for a JSON `reason` on
every error answer, so each send is bounded by a timeout here.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import ClassVar, Final
from urllib.parse import urlsplit

from aioapns import APNs, NotificationRequest, PushType
from aioapns.common import NotificationResult
from aioapns.connection import APNsTLSClientProtocol
from aioapns.exceptions import ConnectionClosed, MaxAttemptsExceeded
from aioapns.exceptions import ConnectionError as APNsConnectionError

from services.core.credentials import APNSCredentials
from services.core.errors import MessageInvalidError, ProviderAuthError
from services.core.events import PushJob
from services.core.providers.base import Provider, Result
from services.core.providers.classify import ErrorClass, classify
from services.core.providers.payload import CallPayloads, Payload
from services.core.settings import Settings

PRODUCTION: Final = "https://api.push.apple.com"
SANDBOX: Final = "https://api.sandbox.push.apple.com"
_PRIORITY: Final = {"high": 10, "normal": 5}
# Apple's tokens are 64 hex digits today and documented as variable length.
_DEVICE_TOKEN: Final = re.compile(r"^[0-9A-Fa-f]{16,200}$")


def endpoint_for(settings: Settings, sandbox: bool) -> tuple[str, int]:
    """(host, port) to reach: PUSHLINE_APNS_ENDPOINT, else Apple's host for the app's flag."""
    url = urlsplit(settings.apns_endpoint or (SANDBOX if sandbox else PRODUCTION))
    if url.scheme != "https" or not url.hostname:
        raise ProviderAuthError(
            f"the APNs endpoint must be an https URL, got {url.geturl()!r}",
            provider="apns",
            reason="BadEndpoint",
        )
    return url.hostname, url.port or 443


def protocol_for(host: str, port: int) -> type[APNsTLSClientProtocol]:
    """An aioapns protocol class that connects to `host:port` (and sends it as `host`)."""
    return type(
        "PushlineAPNsProtocol",
        (APNsTLSClientProtocol,),
        {"APNS_SERVER": host, "APNS_PORT": port},
    )


def ssl_context_for(settings: Settings) -> ssl.SSLContext:
    """System trust plus PUSHLINE_APNS_CA_FILE, offering HTTP/2 by ALPN."""
    context = ssl.create_default_context()
    if settings.apns_ca_file is not None:
        context.load_verify_locations(cafile=str(settings.apns_ca_file))
    context.set_alpn_protocols(["h2"])
    return context


def build_request(job: PushJob, topic: str, payload: Payload) -> NotificationRequest:
    """The aioapns request for a job, with its payload (`build_payload("apns", ...)`)."""
    alert = "alert" in payload.document["aps"]
    return NotificationRequest(
        device_token=job.token,
        message=payload.document,
        notification_id=str(uuid.uuid4()),
        time_to_live=job.options.ttl,
        # Apple refuses background pushes at priority 10.
        priority=_PRIORITY[job.options.priority] if alert else _PRIORITY["normal"],
        collapse_key=job.options.collapse_key,
        push_type=PushType.ALERT if alert else PushType.BACKGROUND,
        apns_topic=topic,
    )


def result_of(answer: NotificationResult) -> Result:
    """The Result of an aioapns answer, keeping a 410's timestamp."""
    status = int(answer.status) if answer.status.isdigit() else None
    if answer.is_successful:
        return Result.success(answer.notification_id, status=status)
    reason = answer.description or str(status)
    invalid_since = (
        datetime.fromtimestamp(answer.timestamp / 1000, UTC)
        if status == 410 and isinstance(answer.timestamp, int | float)
        else None
    )
    return Result.failure(
        "apns",
        classify("apns", status, answer.description),
        reason=reason,
        status=status,
        invalid_since=invalid_since,
    )


async def _quiet(request: NotificationRequest, result: NotificationResult) -> None:
    """aioapns logs every error answer at ERROR; Pushline reports outcomes itself."""


class APNsProvider(Provider):
    """APNs for one app's token-auth key."""

    name: ClassVar = "apns"
    credentials_model: ClassVar = APNSCredentials
    TIMEOUT: ClassVar[float] = 30.0
    MAX_CONNECTIONS: ClassVar[int] = 4

    def __init__(self, credentials: APNSCredentials, settings: Settings) -> None:
        """Raises ProviderAuthError for a bad endpoint (the credentials model has already
        refused a key that is not a P-256 .p8)."""
        self._credentials = credentials
        self._protocol = protocol_for(*endpoint_for(settings, credentials.sandbox))
        self._ssl = ssl_context_for(settings)
        self._client: APNs | None = None

    @property
    def endpoint(self) -> tuple[str, int]:
        """(host, port) this provider connects to."""
        return self._protocol.APNS_SERVER, self._protocol.APNS_PORT

    async def send(self, jobs: Sequence[PushJob]) -> list[Result]:
        """Send each job on the app's HTTP/2 connections; verify jobs are checked locally."""
        payloads = CallPayloads("apns")
        return list(await asyncio.gather(*(self._send_one(job, payloads) for job in jobs)))

    async def aclose(self) -> None:
        """Close the HTTP/2 connections and wait (up to 2 s) until they are gone."""
        if self._client is None:
            return
        pool = self._client.pool
        self._client = None
        # pool.close() only starts closing the TLS transports; each leaves the pool when
        # its connection_lost() runs.
        pool.close()
        for _ in range(200):
            if not pool.connections:
                return
            await asyncio.sleep(0.01)

    def _connect(self) -> APNs:
        # Built on first use: aioapns binds its pool to the running event loop.
        if self._client is None:
            credentials = self._credentials
            client = APNs(
                key=credentials.private_key,
                key_id=credentials.key_id,
                team_id=credentials.team_id,
                topic=credentials.topic,
                use_sandbox=credentials.sandbox,
                ssl_context=self._ssl,
                max_connections=self.MAX_CONNECTIONS,
                max_connection_attempts=1,
                err_func=_quiet,
            )
            client.pool.protocol_class = self._protocol
            self._client = client
        return self._client

    async def _send_one(self, job: PushJob, payloads: CallPayloads) -> Result:
        if not _DEVICE_TOKEN.match(job.token):
            return Result.failure(
                "apns",
                ErrorClass.INVALID_TOKEN,
                reason="BadDeviceToken",
                detail="not a hex APNs device token (checked before sending)",
            )
        payload = payloads.of(job)
        if isinstance(payload, MessageInvalidError):
            return Result.from_error(payload)
        request = build_request(job, self._credentials.topic, payload)
        if job.kind == "verify":
            # APNs has no validate-only send: the token's format and the payload are checked.
            return Result.success(None, status=None)
        try:
            async with asyncio.timeout(self.TIMEOUT):
                answer = await self._connect().send_notification(request)
        except TimeoutError:
            return Result.failure("apns", ErrorClass.RETRYABLE, reason="Timeout")
        except (MaxAttemptsExceeded, APNsConnectionError, ConnectionClosed, OSError) as exc:
            return Result.failure(
                "apns", ErrorClass.RETRYABLE, reason=type(exc).__name__, detail=str(exc) or None
            )
        return result_of(answer)
