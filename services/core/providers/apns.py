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
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

import certifi
import jwt
from pydantic_settings import SettingsConfigDict

from services.core.credentials import APNSCredentials
from services.core.errors import MessageInvalidError, ProviderAuthError
from services.core.events import Content, Options, PushJob, WebPushSubscription
from services.core.fields import Platform
from services.core.providers import curl
from services.core.providers.base import (
    Claim,
    Provider,
    ProviderSettings,
    Result,
    TokenProblem,
    alert,
)
from services.core.providers.classify import (
    AUTH_CONFIG,
    INVALID_TOKEN,
    MESSAGE_INVALID,
    QUOTA,
    RETRYABLE,
    ErrorClass,
    by_status,
)
from services.core.providers.payload import CallPayloads
from services.core.settings import HttpURL

PRODUCTION: Final = "https://api.push.apple.com"
SANDBOX: Final = "https://api.sandbox.push.apple.com"
_PRIORITY: Final = {"high": "10", "normal": "5"}
# Apple's tokens are 64 hex digits today and documented as variable length.
_DEVICE_TOKEN: Final = re.compile(r"^[0-9A-Fa-f]{16,200}$")
# APNs device tokens are 32 bytes sent as hex; Apple warns they may grow, so allow more.
_APNS_TOKEN: Final = re.compile(r"[0-9a-fA-F]{64,200}")
# What a credentials check sends to: hex, but half the 32 bytes of every token Apple
# issues, so no device has it and APNs answers it BadDeviceToken, after the provider token
# and the topic passed (a request APNs refuses for its JWT or topic never gets that far).
CHECK_TOKEN: Final = "0" * 32
_CHECK_PAYLOAD: Final = b'{"aps":{"content-available":1}}'
# A provider JWT is reused this long (Apple: renew after 20 minutes, before 60).
JWT_LIFETIME: Final = 40 * 60.0
_RESERVED: Final = frozenset({"aps"})
# Where the image URL goes in an APNs payload, for the app's notification service extension
# (mutable-content is set alongside it).
IMAGE_KEY: Final = "image_url"
# Where `click_url` goes in an APNs payload, for the app to open when the user taps it.
CLICK_KEY: Final = "click_url"


class APNsErrors:
    """APNs `reason` values.

    https://developer.apple.com/documentation/usernotifications/handling-notification-responses-from-apns
    """

    REASONS: ClassVar[Mapping[str, ErrorClass]] = {
        # 400
        "BadCollapseId": MESSAGE_INVALID,
        "BadDeviceToken": INVALID_TOKEN,
        "BadExpirationDate": MESSAGE_INVALID,
        "BadMessageId": MESSAGE_INVALID,
        "BadPriority": MESSAGE_INVALID,
        "BadTopic": AUTH_CONFIG,
        # The token is for another topic; a wrong topic on the app answers this for every
        # token, so it must not invalidate devices.
        "DeviceTokenNotForTopic": AUTH_CONFIG,
        "DuplicateHeaders": MESSAGE_INVALID,
        "IdleTimeout": RETRYABLE,
        "InvalidPushType": MESSAGE_INVALID,
        "MissingDeviceToken": MESSAGE_INVALID,
        "MissingTopic": AUTH_CONFIG,
        "PayloadEmpty": MESSAGE_INVALID,
        "TopicDisallowed": AUTH_CONFIG,
        # 403
        "BadCertificate": AUTH_CONFIG,
        "BadCertificateEnvironment": AUTH_CONFIG,
        "ExpiredProviderToken": AUTH_CONFIG,
        "Forbidden": AUTH_CONFIG,
        "InvalidProviderToken": AUTH_CONFIG,
        "MissingProviderToken": AUTH_CONFIG,
        "UnrelatedKeyIdInToken": AUTH_CONFIG,
        "BadEnvironmentKeyIdInToken": AUTH_CONFIG,
        # 404, 405
        "BadPath": MESSAGE_INVALID,
        "MethodNotAllowed": MESSAGE_INVALID,
        # 410
        "ExpiredToken": INVALID_TOKEN,
        "Unregistered": INVALID_TOKEN,
        # 413
        "PayloadTooLarge": MESSAGE_INVALID,
        # 429
        "TooManyProviderTokenUpdates": QUOTA,
        "TooManyRequests": QUOTA,
        # 500, 503
        "InternalServerError": RETRYABLE,
        "ServiceUnavailable": RETRYABLE,
        "Shutdown": RETRYABLE,
    }


class APNSSettings(ProviderSettings):
    """`PUSHLINE_APNS_ENDPOINT` (instead of Apple's host for the app's environment) and
    `PUSHLINE_APNS_CA_FILE` (roots trusted beside the system's)."""

    model_config = SettingsConfigDict(env_prefix="PUSHLINE_APNS_", frozen=True, extra="ignore")

    endpoint: HttpURL | None = None
    ca_file: Path | None = None


def is_apns_token(token: str) -> bool:
    """Whether `token` has the shape of an APNs device token (hex, 64+ digits)."""
    return _APNS_TOKEN.fullmatch(token) is not None


def endpoint_for(settings: APNSSettings, sandbox: bool) -> tuple[str, int]:
    """(host, port) to reach: PUSHLINE_APNS_ENDPOINT, else Apple's host for the app's flag."""
    url = urlsplit(settings.endpoint or (SANDBOX if sandbox else PRODUCTION))
    if url.scheme != "https" or not url.hostname:
        raise ProviderAuthError(
            f"the APNs endpoint must be an https URL, got {url.geturl()!r}",
            provider="apns",
            reason="BadEndpoint",
        )
    return url.hostname, url.port or 443


def trusted_roots(settings: APNSSettings) -> bytes:
    """The PEM roots an APNs server must chain to: the system's (certifi's where the
    system has none) plus PUSHLINE_APNS_CA_FILE."""
    system = ssl.get_default_verify_paths().openssl_cafile
    roots = Path(system if Path(system).is_file() else certifi.where()).read_bytes()
    if settings.ca_file is not None:
        roots += b"\n" + Path(settings.ca_file).read_bytes()
    return roots


def _aps_options(options: Options) -> dict[str, Any]:
    """The options that are `aps` keys, those that are set."""
    keys = {
        "badge": options.badge,
        "sound": options.sound,
        "thread-id": options.thread_id,
        "category": options.category,
        "interruption-level": options.interruption_level,
        "mutable-content": 1 if options.mutable_content else None,
    }
    return {key: value for key, value in keys.items() if value is not None}


def _alert(notification: Content, options: Options) -> dict[str, Any]:
    """`aps.alert`: the title and body, and the localisation keys that are set."""
    shown: dict[str, Any] = dict(alert(notification))
    if options.title_loc_key is not None:
        shown["title-loc-key"] = options.title_loc_key
        if options.title_loc_args:
            shown["title-loc-args"] = list(options.title_loc_args)
    if options.body_loc_key is not None:
        shown["loc-key"] = options.body_loc_key
        if options.body_loc_args:
            shown["loc-args"] = list(options.body_loc_args)
    return shown


def headers_for(
    job: PushJob, topic: str, authorization: str, apns_id: str, alert: bool
) -> list[str]:
    """The request headers of one job ("name: value"), `options.apns.headers` last."""
    options = job.options
    headers = {
        "apns-push-type": "alert" if alert else "background",
        # Apple refuses background pushes at priority 10.
        "apns-priority": _PRIORITY[options.priority] if alert else _PRIORITY["normal"],
    }
    if options.ttl is not None:
        headers["apns-expiration"] = str(int(time.time()) + options.ttl)
    if options.collapse_key is not None:
        headers["apns-collapse-id"] = options.collapse_key
    if options.apns is not None and options.apns.headers is not None:
        headers.update(options.apns.headers.provider_json())
    return [
        authorization,
        f"apns-topic: {topic}",
        f"apns-id: {apns_id}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]


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
        APNsProvider.classify(answer.status, reason),
        reason=reason or str(answer.status),
        status=answer.status,
        invalid_since=invalid_since,
    )


class APNsProvider(Provider):
    """APNs for one app's token-auth key."""

    name: ClassVar = "apns"
    title: ClassVar = "APNs"
    credentials_model: ClassVar = APNSCredentials
    settings_model: ClassVar = APNSSettings
    # 32-100 bytes in hex.
    token_limit: ClassVar = 200
    # Of the JSON payload:
    # https://developer.apple.com/documentation/usernotifications/sending-notification-requests-to-apns
    payload_limit: ClassVar = 4096
    # Its 429s are about one device token (`TooManyRequests`) or the key's JWT being
    # renewed too often (`TooManyProviderTokenUpdates`), never the team's rate, and come
    # without Retry-After: the job's own retry backs off, the team is not paused.
    pauses_scope_on_429: ClassVar = False
    TIMEOUT: ClassVar[float] = 30.0
    MAX_CONNECTIONS: ClassVar[int] = 4

    @classmethod
    def claim(cls, platform: Platform, token: str, *, web_subscription: bool) -> Claim | None:
        """An iOS device with an APNs token, when its app has APNs; FCM stands in else."""
        return "preferred" if platform == "ios" and is_apns_token(token) else None

    @classmethod
    def token_problem(
        cls, token: str, subscription: WebPushSubscription | None, *, allow_http: bool
    ) -> TokenProblem | None:
        """A token that is not 64 to 200 hex digits."""
        if not is_apns_token(token):
            return TokenProblem("FailedToStoreDevice", "an APNs token is 64 to 200 hex digits")
        return None

    @classmethod
    def document(
        cls, notification: Content, data: Mapping[str, str], options: Options
    ) -> dict[str, Any]:
        """The data, with `aps` (the alert and the shown options, or content-available for
        a background push), the image URL and the click URL, then `options.apns` merged
        over them. Raises MessageInvalidError for the keys APNs or Pushline keep."""
        kept = {
            IMAGE_KEY: notification.image_url is not None,
            CLICK_KEY: options.click_url is not None,
        }
        if _RESERVED & data.keys() or any(kept[key] for key in kept.keys() & data.keys()):
            raise MessageInvalidError(
                f"data keys reserved in the APNs payload: aps, {IMAGE_KEY} with an image, "
                f"{CLICK_KEY} with a click_url",
                provider="apns",
                reason="ReservedDataKey",
            )
        aps: dict[str, Any] = {}
        if alert(notification):
            aps["alert"] = _alert(notification, options)
            aps.update(_aps_options(options))
        else:
            aps["content-available"] = 1  # no alert: a background notification
        document: dict[str, Any] = dict(data)
        if notification.image_url:
            aps["mutable-content"] = 1
            document[IMAGE_KEY] = notification.image_url
        if options.click_url is not None:
            document[CLICK_KEY] = options.click_url
        override = options.apns
        if override is not None:
            document.update(override.custom)
            if override.aps is not None:
                merged = override.aps.provider_json()
                if "alert" in merged:
                    merged["alert"] = {**aps.get("alert", {}), **merged["alert"]}
                aps.update(merged)
        document["aps"] = aps
        return document

    @classmethod
    def classify(
        cls,
        status: int | None,
        code: str | None = None,
        details: Sequence[Mapping[str, Any]] = (),
    ) -> ErrorClass:
        """`code` is APNs's JSON `reason`."""
        if code is not None and code in APNsErrors.REASONS:
            return APNsErrors.REASONS[code]
        return by_status(status, not_found=MESSAGE_INVALID)

    def __init__(self, credentials: APNSCredentials, settings: APNSSettings) -> None:
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

    def quota_scope(self, job: PushJob) -> str:
        """The key's team: Apple's developer account, whose apps share one connection
        budget."""
        return self._credentials.team_id

    async def send(self, jobs: Sequence[PushJob]) -> list[Result]:
        """Send each job, multiplexed on the app's HTTP/2 connections; verify jobs are
        checked locally."""
        payloads = CallPayloads(APNsProvider)
        return list(await asyncio.gather(*(self._send_one(job, payloads) for job in jobs)))

    async def check(self) -> Result:
        """A background push to CHECK_TOKEN, signed with the app's key for its topic:
        `invalid_token` (400 BadDeviceToken) once APNs has taken the provider token and the
        topic, `auth_config` (403 InvalidProviderToken, 400 DeviceTokenNotForTopic, ...)
        when it refuses them."""
        apns_id = str(uuid.uuid4())
        headers = [
            self._bearer(),
            f"apns-topic: {self._credentials.topic}",
            f"apns-id: {apns_id}",
            "apns-push-type: background",
            f"apns-priority: {_PRIORITY['normal']}",
        ]
        return await self._post(CHECK_TOKEN, headers, _CHECK_PAYLOAD, apns_id)

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
        return await self._post(job.token, headers, payload.encoded, apns_id)

    async def _post(self, token: str, headers: list[str], body: bytes, apns_id: str) -> Result:
        """One request to the device `token`, and what its answer means."""
        try:
            answer = await self._connect().post(self._base + token, headers, body)
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
