"""Web Push through pywebpush: RFC 8291 aes128gcm encryption, RFC 8292 VAPID, aiohttp.

pywebpush's `webpush()` blocks on `requests` and mutates the claims dict it is given, so
this adapter uses only its `WebPusher.encode` for the encryption, signs VAPID JWTs itself
with py_vapid (one per push-service origin, reused for under 24 h), and posts with aiohttp
(`transport`: httpx costs ten times its CPU per request) through a connector that enforces
the outbound policy (`outbound.connector`): a subscription's endpoint is reached only at
checked public addresses, unless `PUSHLINE_WEBHOOK_ALLOW_PRIVATE`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final
from urllib.parse import SplitResult, urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02, VapidException
from py_vapid.utils import b64urlencode
from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict
from pywebpush import WebPusher, WebPushException

from services.core import outbound
from services.core.credentials import WebPushCredentials
from services.core.errors import MessageInvalidError, OutboundRefusedError, ProviderAuthError
from services.core.events import Content, Options, PushJob, WebPushSubscription
from services.core.fields import Platform
from services.core.providers import transport
from services.core.providers.base import (
    Claim,
    Provider,
    ProviderSettings,
    Result,
    TokenProblem,
    parse_retry_after,
)
from services.core.providers.classify import (
    AUTH_CONFIG,
    INVALID_TOKEN,
    MESSAGE_INVALID,
    QUOTA,
    ErrorClass,
    by_status,
)
from services.core.providers.payload import CallPayloads
from services.core.settings import Targets

_RAW_POINT: Final = (
    serialization.Encoding.X962,
    serialization.PublicFormat.UncompressedPoint,
)
# Four weeks, FCM's and most push services' longest TTL, when a job gives none.
DEFAULT_TTL: Final = 2_419_200
# RFC 8030 section 5.4: a Topic is at most 32 characters of the URL-safe base64 alphabet.
_TOPIC: Final = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_URGENCY: Final = {"high": "high", "normal": "normal"}
# RFC 8291: the client's key is an uncompressed P-256 point, its auth secret 16 bytes.
_AUTH_SECRET_BYTES: Final = 16


class WebPushErrors:
    """Web Push answers by HTTP status (RFC 8030 has no error codes).

    https://www.rfc-editor.org/rfc/rfc8030#section-5
    https://www.rfc-editor.org/rfc/rfc8292#section-4
    https://web.dev/articles/push-notifications-web-push-protocol#response_from_push_service
    """

    STATUSES: ClassVar[Mapping[int, ErrorClass]] = {
        400: MESSAGE_INVALID,  # malformed headers or body
        401: AUTH_CONFIG,  # VAPID JWT refused
        403: AUTH_CONFIG,  # VAPID key does not match the subscription's applicationServerKey
        404: INVALID_TOKEN,  # subscription not found
        410: INVALID_TOKEN,  # subscription expired or unsubscribed
        413: MESSAGE_INVALID,  # payload too large
        429: QUOTA,
    }


class WebPushSettings(ProviderSettings):
    """Which private addresses push services may have: any, where webhooks may
    (`PUSHLINE_WEBHOOK_ALLOW_PRIVATE`), else those of `PUSHLINE_WEBPUSH_PRIVATE_TARGETS`."""

    model_config = SettingsConfigDict(
        env_prefix="PUSHLINE_WEBPUSH_", frozen=True, extra="ignore", populate_by_name=True
    )

    allow_private: bool = Field(
        default=False,
        validation_alias=AliasChoices("allow_private", "PUSHLINE_WEBHOOK_ALLOW_PRIVATE"),
    )
    private_targets: Targets = ()


def origin_of(endpoint: SplitResult) -> str:
    """A push endpoint's origin, scheme://host[:port]: the push service it belongs to."""
    return f"{endpoint.scheme}://{endpoint.netloc}"


def _base64url(value: str) -> bytes:
    """The bytes of unpadded (or padded) base64url text; b"" when it is not base64url."""
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return b""


class VapidCache:
    """VAPID `Authorization` headers, one per push-service origin, reused until near expiry.

    A JWT lives `LIFETIME` seconds (RFC 8292 allows at most 24 h) and is replaced once
    less than `MARGIN` seconds remain, so no header in flight is ever expired.
    """

    LIFETIME: ClassVar[int] = 12 * 3600
    MARGIN: ClassVar[int] = 3600

    def __init__(self, vapid: Vapid02, subject: str) -> None:
        self._vapid = vapid
        self._subject = subject
        self._headers: dict[str, tuple[int, str]] = {}

    def header(self, origin: str, now: float) -> str:
        """The Authorization header for `origin` (scheme://host[:port]) at time `now`."""
        cached = self._headers.get(origin)
        if cached is not None and cached[0] - now > self.MARGIN:
            return cached[1]
        expires = int(now) + self.LIFETIME
        # A fresh claims dict every time: signing libraries are known to mutate it.
        claims: dict[str, str | int] = {"aud": origin, "sub": self._subject, "exp": expires}
        header = str(self._vapid.sign(claims)["Authorization"])
        self._headers[origin] = (expires, header)
        return header


@dataclass(frozen=True, slots=True)
class _Prepared:
    url: str
    headers: dict[str, str]
    body: bytes


class WebPushProvider(Provider):
    """Web Push for one app's VAPID keys."""

    name: ClassVar = "webpush"
    title: ClassVar = "Web Push"
    credentials_model: ClassVar = WebPushCredentials
    settings_model: ClassVar = WebPushSettings
    # An endpoint is a URL.
    token_limit: ClassVar = 2048
    token_noun: ClassVar = "the Web Push endpoint"  # noqa: S105 - words, not a secret
    # Per encrypted aes128gcm record 4096 bytes, of which 103 are header, padding
    # delimiter and tag (RFC 8291 section 4, RFC 8188).
    payload_limit: ClassVar = 3993
    scopes_from_devices: ClassVar = True
    TIMEOUT: ClassVar[float] = 10.0

    @classmethod
    def claim(cls, platform: Platform, token: str, *, web_subscription: bool) -> Claim | None:
        """A browser's W3C push subscription, which no other provider reaches."""
        return "sole" if platform == "web" and web_subscription else None

    @classmethod
    def token_problem(
        cls, token: str, subscription: WebPushSubscription | None, *, allow_http: bool
    ) -> TokenProblem | None:
        """A missing subscription, an endpoint that is not https (or http where
        `allow_http`), or keys RFC 8291 cannot encrypt for."""
        if subscription is None:
            return TokenProblem("FailedToStoreDevice", "a Web Push device needs a subscription")
        parts = urlsplit(subscription.endpoint)
        # RFC 8030 push services speak https; plain http is for local emulators only.
        schemes = ("https", "http") if allow_http else ("https",)
        if parts.scheme not in schemes or not parts.hostname:
            allowed = " or http://" if allow_http else ""
            return TokenProblem(
                "FailedToStoreDevice", f"the Web Push endpoint is not an https://{allowed} URL"
            )
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(
                ec.SECP256R1(), _base64url(subscription.keys.p256dh)
            )
        except ValueError:
            return TokenProblem(
                "FailedToStoreDevice",
                "the subscription's p256dh key is not a P-256 public key in base64url",
            )
        if len(_base64url(subscription.keys.auth)) != _AUTH_SECRET_BYTES:
            return TokenProblem(
                "FailedToStoreDevice",
                "the subscription's auth secret is not 16 bytes in base64url",
            )
        return None

    @classmethod
    def document(
        cls, notification: Content, data: Mapping[str, str], options: Options
    ) -> dict[str, Any]:
        """`{"notification": {...}, "data": {...}}` for the page's service worker, whose
        `notification` holds Notification API options (`showNotification`): the title,
        body and image, `tag`, the click URL as `data.url`, then
        `options.webpush.notification` merged over them."""
        document = super().document(notification, data, options)
        shown: dict[str, Any] = document.get("notification", {})
        if shown:
            if options.tag is not None:
                shown["tag"] = options.tag
            if options.click_url is not None:
                shown["data"] = {"url": options.click_url}
        override = options.webpush
        if override is not None and override.notification is not None:
            shown.update(override.notification.provider_json())
        if shown:
            document["notification"] = shown
        return document

    @classmethod
    def classify(
        cls,
        status: int | None,
        code: str | None = None,
        details: Sequence[Mapping[str, Any]] = (),
    ) -> ErrorClass:
        """From the HTTP status alone."""
        if status is not None and status in WebPushErrors.STATUSES:
            return WebPushErrors.STATUSES[status]
        return by_status(status, not_found=INVALID_TOKEN)

    def __init__(self, credentials: WebPushCredentials, settings: WebPushSettings) -> None:
        """Raises ProviderAuthError when the VAPID keys are unusable or do not match."""
        try:
            private_key = credentials.vapid_private_key
            # Raw (base64url scalar) or DER as web-push tools print them, or PEM.
            if "-----BEGIN" in private_key:
                vapid = Vapid02.from_pem(private_key.strip().encode())
            else:
                vapid = Vapid02.from_string(private_key)
            public = b64urlencode(vapid.public_key.public_bytes(*_RAW_POINT))
        except (VapidException, ValueError, TypeError, binascii.Error) as exc:
            raise ProviderAuthError(
                "the VAPID private key is not a valid P-256 key",
                provider="webpush",
                reason="BadVapidKey",
            ) from exc
        if public != credentials.vapid_public_key.rstrip("="):
            raise ProviderAuthError(
                "the VAPID public key does not belong to the private key",
                provider="webpush",
                reason="VapidKeyMismatch",
            )
        self._vapid = VapidCache(vapid, credentials.subject)
        self._allow_private = settings.allow_private
        self._private_targets = frozenset(settings.private_targets)
        self._session = transport.Session(
            lambda: outbound.connector(
                allow_private=self._allow_private,
                targets=self._private_targets,
                limit=transport.CONNECTIONS,
            ),
            self.TIMEOUT,
        )

    def quota_scope(self, job: PushJob) -> str | None:
        """The push service the job goes to, its endpoint's origin (scheme://host[:port],
        lower case): each push service has its own limits."""
        if job.subscription is None:
            return None
        return origin_of(urlsplit(job.subscription.endpoint)).lower()

    async def send(self, jobs: Sequence[PushJob]) -> list[Result]:
        """Encrypt and post each job to its subscription's push service."""
        payloads, now = CallPayloads(WebPushProvider), time.time()
        return list(
            await asyncio.gather(
                *(self._send_one(self._prepare(job, payloads, now), job) for job in jobs)
            )
        )

    async def check(self) -> Result:
        """Success: building the provider matched the VAPID key pair (a mismatch raised
        ProviderAuthError), which is all that can be checked without a subscription (a
        push service judges a VAPID JWT only against a subscription's key)."""
        return Result.success(None, status=None)

    async def aclose(self) -> None:
        """Close the connections."""
        await self._session.aclose()

    def _prepare(self, job: PushJob, payloads: CallPayloads, now: float) -> _Prepared | Result:
        subscription = job.subscription
        if subscription is None:
            return Result.from_error(
                MessageInvalidError(
                    "a Web Push job without a subscription",
                    provider="webpush",
                    reason="MissingSubscription",
                )
            )
        parts = urlsplit(subscription.endpoint)
        if not parts.hostname or not (
            parts.scheme == "https" or (parts.scheme == "http" and self._plain_http_allowed(parts))
        ):
            return _not_allowed("push endpoints must be https URLs")
        payload = payloads.of(job)
        if isinstance(payload, MessageInvalidError):
            return Result.from_error(payload)
        try:
            pusher = WebPusher(subscription.model_dump(include={"endpoint", "keys"}))
            body = pusher.encode(payload.encoded, content_encoding="aes128gcm")["body"]
        except (WebPushException, ValueError, TypeError, IndexError, binascii.Error) as exc:
            return Result.failure(
                "webpush",
                ErrorClass.INVALID_TOKEN,
                reason="BadSubscriptionKeys",
                detail=f"cannot encrypt for this subscription: {type(exc).__name__}",
            )
        headers = {
            "Authorization": self._vapid.header(origin_of(parts), now),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "TTL": str(job.options.ttl if job.options.ttl is not None else DEFAULT_TTL),
            "Urgency": _URGENCY[job.options.priority],
        }
        if job.options.collapse_key and _TOPIC.match(job.options.collapse_key):
            headers["Topic"] = job.options.collapse_key
        override = job.options.webpush
        if override is not None and override.headers is not None:
            headers.update(
                {name: str(value) for name, value in override.headers.provider_json().items()}
            )
        return _Prepared(url=subscription.endpoint, headers=headers, body=bytes(body))

    def _plain_http_allowed(self, parts: SplitResult) -> bool:
        # RFC 8030 push services speak https; plain http only where private targets are
        # allowed (the emulators). Which addresses may be reached is the client's check.
        if self._allow_private:
            return True
        try:
            port = parts.port or 80
        except ValueError:
            return False
        return outbound.host_port(parts.hostname or "", port) in self._private_targets

    async def _send_one(self, prepared: _Prepared | Result, job: PushJob) -> Result:
        if isinstance(prepared, Result):
            return prepared
        if job.kind == "verify":
            # Web Push has no validate-only send: the subscription parsed and encrypts.
            return Result.success(None, status=None)
        try:
            async with self._session.get().post(
                prepared.url, headers=prepared.headers, data=prepared.body, allow_redirects=False
            ) as response:
                status = response.status
                headers = response.headers
                answer = await response.read()
        except OutboundRefusedError as exc:
            return _not_allowed(str(exc))
        except transport.UNANSWERED as exc:
            return transport.unanswered("webpush", exc)
        if 200 <= status < 300:
            return Result.success(headers.get("Location"), status=status)
        return Result.failure(
            "webpush",
            WebPushProvider.classify(status),
            reason=str(status),
            detail=answer[:500].decode(errors="replace") or None,
            status=status,
            retry_after=parse_retry_after(headers.get("Retry-After")),
        )


def _not_allowed(detail: str) -> Result:
    return Result.failure(
        "webpush", ErrorClass.INVALID_TOKEN, reason="EndpointNotAllowed", detail=detail
    )
