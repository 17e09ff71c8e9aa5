"""APNs emulator: Apple's provider API over HTTP/2 and TLS, with token (JWT) auth.

Answers and reasons follow Apple's "Handling notification responses from APNs":
https://developer.apple.com/documentation/usernotifications/handling-notification-responses-from-apns
Every error carries a JSON `reason`; `Unregistered` (410) also a `timestamp` in milliseconds.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from services.sandbox.emulators.emulator import CONTROL_PREFIX, Emulator
from services.sandbox.emulators.h2server import H2Request, H2Response, H2Server
from services.sandbox.emulators.keys import ec_key, pkcs8_pem
from services.sandbox.emulators.state import RECORD_LIMIT, Record, TokenState
from services.sandbox.emulators.tls import TLSFiles, certificates
from services.sandbox.emulators.verified import VerifiedTokens

_DEVICE_PATH = "/3/device/"
_TOKEN = re.compile(r"^[0-9a-fA-F]{64}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_PUSH_TYPES = frozenset(
    {
        "alert",
        "background",
        "location",
        "voip",
        "complication",
        "fileprovider",
        "mdm",
        "liveactivity",
        "pushtotalk",
        "widgets",
    }
)
# Provider tokens older than an hour are refused (ExpiredProviderToken).
TOKEN_MAX_AGE = 3600
MAX_PAYLOAD = 4096
MAX_VOIP_PAYLOAD = 5120
_RECORDED_HEADERS = (
    "apns-id",
    "apns-topic",
    "apns-push-type",
    "apns-priority",
    "apns-expiration",
    "apns-collapse-id",
)


class _RefusalError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class APNSEmulator(Emulator):
    """APNs for one team and signing key, delivering to the configured topics (bundle ids).

    The CA that signed its certificate is `tls.ca_file`; `key_pem` is the .p8 text a client
    signs its provider tokens with.
    """

    provider = "apns"

    FAULTS: ClassVar[dict[int, str]] = {
        429: "TooManyRequests",
        500: "InternalServerError",
        503: "ServiceUnavailable",
    }

    def __init__(
        self,
        *,
        cert_dir: Path,
        team_id: str = "PUSHLINE01",
        key_id: str = "EMULATOR01",
        topics: tuple[str, ...] = ("com.example.pushline",),
        key: ec.EllipticCurvePrivateKey | None = None,
        record_limit: int = RECORD_LIMIT,
    ) -> None:
        super().__init__(record_limit=record_limit)
        self.team_id = team_id
        self.key_id = key_id
        self.topics = topics
        self._key = key or ec_key()
        # Provider tokens verified once each: clients reuse one for up to an hour.
        self._verified = VerifiedTokens()
        self.tls: TLSFiles = certificates(cert_dir)
        self._server = H2Server(self._handle, self.tls.server_context(["h2"]))
        self._host = "127.0.0.1"
        self._port = 0

    @property
    def key_pem(self) -> str:
        """The signing key as .p8 (PKCS#8 PEM) text, as Apple hands it out."""
        return pkcs8_pem(self._key)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._port = await self._server.start(host, port)
        self._host = host

    async def stop(self) -> None:
        await self._server.stop()

    @property
    def host(self) -> str:
        """The address the emulator listens on."""
        return self._host

    @property
    def port(self) -> int:
        """The port the emulator listens on."""
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"https://{host}:{self._port}"

    def client_config(self) -> dict[str, Any]:
        return {
            "endpoint": self.url,
            "team_id": self.team_id,
            "key_id": self.key_id,
            "topics": list(self.topics),
            "key": self.key_pem,
            "ca_file": str(self.tls.ca_file),
        }

    def _handle(self, request: H2Request) -> H2Response:
        if request.path.startswith(CONTROL_PREFIX):
            status, document = self.control(request.method, request.path, request.body)
            body = json.dumps(document).encode()
            return H2Response(status, [("content-type", "application/json")], body)
        apns_id = request.headers.get("apns-id") or str(uuid.uuid4()).upper()
        latency = self.controls.latency
        token = request.path.removeprefix(_DEVICE_PATH)
        timestamp: int | None = None
        reason: str | None
        try:
            self._check(request, token)
            state, since = self.controls.token_state(token)
            if state is TokenState.INVALID:
                raise _RefusalError(400, "BadDeviceToken")
            if state is TokenState.UNREGISTERED:
                timestamp = since
                raise _RefusalError(410, "Unregistered")
        except _RefusalError as refusal:
            status, reason = refusal.status, refusal.reason
        else:
            status, reason = 200, None
        self.controls.add(
            Record(
                provider=self.provider,
                target=token,
                status=status,
                reason=reason,
                headers={k: request.headers[k] for k in _RECORDED_HEADERS if k in request.headers},
                payload=_json_or_none(request.body),
                received_at=time.time(),
            )
        )
        if reason is None:
            return H2Response(200, [("apns-id", apns_id)], delay=latency)
        answer: dict[str, Any] = {"reason": reason}
        if timestamp is not None:
            answer["timestamp"] = timestamp
        headers = [("apns-id", apns_id), ("content-type", "application/json")]
        return H2Response(status, headers, json.dumps(answer).encode(), delay=latency)

    def _check(self, request: H2Request, token: str) -> None:
        """Raise _RefusalError with APNs' status and reason for the first problem found."""
        if request.method != "POST":
            raise _RefusalError(405, "MethodNotAllowed")
        if not request.path.startswith(_DEVICE_PATH):
            raise _RefusalError(404, "BadPath")
        if not token:
            raise _RefusalError(400, "MissingDeviceToken")
        self._check_provider_token(request.headers.get("authorization"))
        topic = request.headers.get("apns-topic")
        if not topic:
            raise _RefusalError(400, "MissingTopic")
        if topic not in self.topics:
            raise _RefusalError(400, "DeviceTokenNotForTopic")
        _check_headers(request.headers)
        limit = MAX_VOIP_PAYLOAD if request.headers.get("apns-push-type") == "voip" else MAX_PAYLOAD
        if not request.body:
            raise _RefusalError(400, "PayloadEmpty")
        if len(request.body) > limit:
            raise _RefusalError(413, "PayloadTooLarge")
        fault = self.controls.draw_fault()
        if fault is not None:
            raise _RefusalError(fault.status, self.FAULTS[fault.status])
        if not _TOKEN.match(token):
            raise _RefusalError(400, "BadDeviceToken")

    def _check_provider_token(self, authorization: str | None) -> None:
        if not authorization:
            raise _RefusalError(403, "MissingProviderToken")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            raise _RefusalError(403, "InvalidProviderToken")
        now = time.time()
        issued = self._verified.get(token, now)
        if issued is None:
            issued = self._verify(token)
            self._verified.put(token, issued, expires=issued["iat"] + TOKEN_MAX_AGE)
        if issued["iat"] > now + 60:
            raise _RefusalError(403, "InvalidProviderToken")
        if now - issued["iat"] > TOKEN_MAX_AGE:
            raise _RefusalError(403, "ExpiredProviderToken")

    def _verify(self, token: str) -> dict[str, int]:
        """{"iat": ...} of a token signed with this team's key; raises _RefusalError."""
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(
                token,
                self._key.public_key(),
                algorithms=["ES256"],
                issuer=self.team_id,
                options={"require": ["iss", "iat"], "verify_iat": False},
            )
            issued = int(claims["iat"])
        except (jwt.PyJWTError, TypeError, ValueError) as exc:
            raise _RefusalError(403, "InvalidProviderToken") from exc
        if header.get("kid") != self.key_id:
            raise _RefusalError(403, "InvalidProviderToken")
        return {"iat": issued}


def _check_headers(headers: dict[str, str]) -> None:
    apns_id = headers.get("apns-id")
    if apns_id is not None and not _UUID.match(apns_id):
        raise _RefusalError(400, "BadMessageId")
    priority = headers.get("apns-priority")
    if priority is not None and priority not in {"1", "5", "10"}:
        raise _RefusalError(400, "BadPriority")
    expiration = headers.get("apns-expiration")
    if expiration is not None and not expiration.isdigit():
        raise _RefusalError(400, "BadExpirationDate")
    collapse_id = headers.get("apns-collapse-id")
    if collapse_id is not None and len(collapse_id.encode()) > 64:
        raise _RefusalError(400, "BadCollapseId")
    push_type = headers.get("apns-push-type")
    if push_type is not None and push_type not in _PUSH_TYPES:
        raise _RefusalError(400, "InvalidPushType")


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None
