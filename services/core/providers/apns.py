"""APNs: token (.p8 JWT) auth over HTTP/2 and TLS, through libcurl (`curl.Multi`).

Requests follow Apple's "Sending notification requests to APNs": `POST /3/device/<token>`
on `api.push.apple.com` (or the sandbox host, or PUSHLINE_APNS_ENDPOINT) with
`authorization: bearer <provider JWT>`, `apns-topic`, `apns-push-type`, `apns-priority`,
`apns-id`, and `apns-expiration` / `apns-collapse-id` when the job sets them. The provider
JWT (ES256, `kid` = key id, `iss` = team id, `iat`) is signed once and reused for
JWT_LIFETIME: Apple refuses one older than an hour and one renewed more often than every 20
minutes (`TooManyProviderTokenUpdates`). An error answer is APNs' JSON `reason` (with a
`timestamp` on 410). The HTTP/2 client was aioapns, whose pure-Python framing cost four
times libcurl's CPU per request here (curl.py).
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar, Final
from urllib.parse import urlsplit

import certifi
import jwt

from services.core.credentials import APNSCredentials
from services.core.errors import MessageInvalidError, ProviderAuthError
from services.core.events import PushJob
from services.core.providers import curl
from services.core.providers.base import Provider, Result
from services.core.providers.classify import ErrorClass, classify
from services.core.providers.payload import CallPayloads
from services.core.settings import Settings

PRODUCTION: Final = "https://api.push.apple.com"
SANDBOX: Final = "https://api.sandbox.push.apple.com"
_PRIORITY: Final = {"high": "10", "normal": "5"}
# Apple's tokens are 64 hex digits today and documented as variable length.
_DEVICE_TOKEN: Final = re.compile(r"^[0-9A-Fa-f]{16,200}$")
# A provider JWT is reused this long (Apple: renew after 20 minutes, before 60).
JWT_LIFETIME: Final = 40 * 60.0


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


def trusted_roots(settings: Settings) -> bytes:
    """The PEM roots an APNs server must chain to: the system's (certifi's where the
    system has none) plus PUSHLINE_APNS_CA_FILE."""
    system = ssl.get_default_verify_paths().openssl_cafile
    roots = Path(system if Path(system).is_file() else certifi.where()).read_bytes()
    if settings.apns_ca_file is not None:
        roots += b"\n" + Path(settings.apns_ca_file).read_bytes()
    return roots


def headers_for(
    job: PushJob, topic: str, authorization: str, apns_id: str, alert: bool
) -> list[str]:
    """The request headers of one job ("name: value")."""
    headers = [
        authorization,
        f"apns-topic: {topic}",
        f"apns-id: {apns_id}",
        f"apns-push-type: {'alert' if alert else 'background'}",
        # Apple refuses background pushes at priority 10.
        f"apns-priority: {_PRIORITY[job.options.priority] if alert else _PRIORITY['normal']}",
    ]
    if job.options.ttl is not None:
        headers.append(f"apns-expiration: {int(time.time()) + job.options.ttl}")
    if job.options.collapse_key is not None:
        headers.append(f"apns-collapse-id: {job.options.collapse_key}")
    return headers


def result_of(answer: curl.Answer, apns_id: str) -> Result:
    """The Result of an APNs answer, keeping a 410's timestamp."""
    if answer.status == 200:
        return Result.success(apns_id, status=200)
    try:
        body = json.loads(answer.body) if answer.body else {}
    except ValueError:
        body = {}
    reason = body.get("reason") if isinstance(body, dict) else None
    timestamp = body.get("timestamp") if isinstance(body, dict) else None
    invalid_since = (
        datetime.fromtimestamp(timestamp / 1000, UTC)
        if answer.status == 410 and isinstance(timestamp, int | float)
        else None
    )
    return Result.failure(
        "apns",
        classify("apns", answer.status, reason),
        reason=reason or str(answer.status),
        status=answer.status,
        invalid_since=invalid_since,
    )


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
        self._endpoint = endpoint_for(settings, credentials.sandbox)
        host, port = self._endpoint
        self._base = f"https://{host}:{port}/3/device/"
        self._roots = trusted_roots(settings)
        self._multi: curl.Multi | None = None
        self._authorization = ""
        self._signed_at = 0.0

    @property
    def endpoint(self) -> tuple[str, int]:
        """(host, port) this provider connects to."""
        return self._endpoint

    async def send(self, jobs: Sequence[PushJob]) -> list[Result]:
        """Send each job, multiplexed on the app's HTTP/2 connections; verify jobs are
        checked locally."""
        payloads = CallPayloads("apns")
        return list(await asyncio.gather(*(self._send_one(job, payloads) for job in jobs)))

    async def aclose(self) -> None:
        """Close the connections."""
        if self._multi is not None:
            self._multi.close()
            self._multi = None

    def _connect(self) -> curl.Multi:
        # Opened on first use: it serves the running event loop.
        if self._multi is None:
            self._multi = curl.Multi(
                self._roots, connections=self.MAX_CONNECTIONS, timeout=self.TIMEOUT
            )
        return self._multi

    def _bearer(self) -> str:
        now = time.time()
        if now - self._signed_at >= JWT_LIFETIME:
            credentials = self._credentials
            token = jwt.encode(
                {"iss": credentials.team_id, "iat": int(now)},
                credentials.private_key,
                algorithm="ES256",
                headers={"kid": credentials.key_id},
            )
            self._authorization, self._signed_at = f"authorization: bearer {token}", now
        return self._authorization

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
        if job.kind == "verify":
            # APNs has no validate-only send: the token's format and the payload are checked.
            return Result.success(None, status=None)
        alert = "alert" in payload.document["aps"]
        apns_id = str(uuid.uuid4())
        headers = headers_for(job, self._credentials.topic, self._bearer(), apns_id, alert)
        try:
            answer = await self._connect().post(self._base + job.token, headers, payload.encoded)
        except curl.TransferError as exc:
            return Result.failure(
                "apns",
                ErrorClass.RETRYABLE,
                reason=exc.reason,
                detail=str(exc) or None,
                maybe_delivered=exc.maybe_delivered,
            )
        result = result_of(answer, apns_id)
        if result.reason == "ExpiredProviderToken":
            # Sign anew for the next call (the clock may have jumped); this one fails.
            self._signed_at = 0.0
        return result
