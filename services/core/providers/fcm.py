"""FCM HTTP v1: firebase-admin's credentials and message model, posted over aiohttp.

firebase-admin's own send (`send_each_async`, one httpx request per message) was 67% of
the sender's CPU samples in a profile, and httpx costs ~2.2 CPU s per 1,000 requests here
against aiohttp's ~0.2 (ARCHITECTURE.md "Known facts"). So this adapter keeps from
firebase-admin what it does best and makes the HTTP requests itself:
- the service account's credential (`credentials.Certificate`, with firebase-admin's
  scopes). Its OAuth token comes from the account's `token_uri` and is refreshed ahead, in
  a thread, before a call that needs it: google-auth refreshes synchronously with
  `requests` and would otherwise block the event loop;
- the message model (`messaging.Message`, which validates) and its v1 JSON encoding,
  `_MessagingService.encode_message`: the one private name used, checked by `encoder()`.
Each message is one POST to `{PUSHLINE_FCM_ENDPOINT}/v1/projects/{project}/messages:send`
over a bounded pool of keep-alive connections (`transport`), with firebase-admin's
headers. Nothing here retries a 5xx or 429: each reaches the sender's retry policy after
exactly one request, with its Retry-After. A 401 refreshes the token and repeats the
request, at most twice, as firebase-admin does; a 401 that survives that is `auth_config`.
"""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Final

import firebase_admin
from firebase_admin import credentials as firebase_credentials
from firebase_admin import messaging
from google.auth import exceptions as auth_exceptions
from google.auth.transport import requests as auth_requests
from pydantic_settings import SettingsConfigDict

from services.core.credentials import FCMCredentials
from services.core.errors import DependencyError, MessageInvalidError, ProviderAuthError
from services.core.events import Content, Platform, PushJob
from services.core.providers import transport
from services.core.providers.base import (
    Claim,
    Provider,
    ProviderSettings,
    Result,
    parse_retry_after,
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
from services.core.providers.payload import build_payload
from services.core.settings import HttpURL

_APNS_PRIORITY: Final = {"high": "10", "normal": "5"}
# A rejected access token is refreshed and the request repeated at most this often.
REFRESHES: Final = 2
# The headers firebase-admin 7.7 sends with every FCM request (`_MessagingService`).
HEADERS: Final = {
    "Content-Type": "application/json; charset=UTF-8",
    "X-GOOG-API-FORMAT-VERSION": "2",
    "X-FIREBASE-CLIENT": f"fire-admin-python/{firebase_admin.__version__}",
}


# Data keys the provider keeps for itself.
# https://firebase.google.com/docs/cloud-messaging/concept-options#data_messages
_RESERVED: Final = frozenset({"from", "notification", "message_type"})
_RESERVED_PREFIXES: Final = ("google", "gcm")


class FCMErrors:
    """FCM HTTP v1 error codes.

    https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode
    https://firebase.google.com/docs/cloud-messaging/manage-tokens#detect-invalid-token-responses-from-the-fcm-backend
    """

    FCM_ERROR_TYPE: ClassVar[str] = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
    BAD_REQUEST_TYPE: ClassVar[str] = "type.googleapis.com/google.rpc.BadRequest"
    TOKEN_FIELDS: ClassVar[frozenset[str]] = frozenset({"message.token", "message.fid"})

    # FcmError.errorCode, and the canonical google.rpc status of `error.status` when the
    # answer has no FcmError detail.
    CODES: ClassVar[Mapping[str, ErrorClass]] = {
        "UNREGISTERED": INVALID_TOKEN,
        # Refined by `classify`: a field violation that is not the token is the message's.
        "INVALID_ARGUMENT": INVALID_TOKEN,
        # The token belongs to another sender; when the app's project is wrong every token
        # answers this, so it must not invalidate devices.
        "SENDER_ID_MISMATCH": AUTH_CONFIG,
        "THIRD_PARTY_AUTH_ERROR": AUTH_CONFIG,
        "APNS_AUTH_ERROR": AUTH_CONFIG,  # the pre-2020 name of THIRD_PARTY_AUTH_ERROR
        "QUOTA_EXCEEDED": QUOTA,
        "UNAVAILABLE": RETRYABLE,
        "INTERNAL": RETRYABLE,
        "UNSPECIFIED_ERROR": RETRYABLE,
        # google.rpc canonical codes (https://cloud.google.com/apis/design/errors#error_codes)
        "UNAUTHENTICATED": AUTH_CONFIG,
        "PERMISSION_DENIED": AUTH_CONFIG,
        # A 404 without FcmError UNREGISTERED is a wrong project id in the URL.
        "NOT_FOUND": AUTH_CONFIG,
        "RESOURCE_EXHAUSTED": QUOTA,
        "DEADLINE_EXCEEDED": RETRYABLE,
        "FAILED_PRECONDITION": MESSAGE_INVALID,
    }

    @classmethod
    def error_code(cls, details: Sequence[Mapping[str, Any]]) -> str | None:
        """The `errorCode` of the FcmError detail, if the answer has one."""
        for detail in details:
            if detail.get("@type") == cls.FCM_ERROR_TYPE and isinstance(
                detail.get("errorCode"), str
            ):
                return str(detail["errorCode"])
        return None

    @classmethod
    def violated_fields(cls, details: Sequence[Mapping[str, Any]]) -> list[str]:
        """The fields named by `google.rpc.BadRequest` details, in order."""
        fields: list[str] = []
        for detail in details:
            if detail.get("@type") != cls.BAD_REQUEST_TYPE:
                continue
            for violation in detail.get("fieldViolations") or []:
                if isinstance(violation, Mapping) and isinstance(violation.get("field"), str):
                    fields.append(violation["field"])
        return fields


class FCMSettings(ProviderSettings):
    """`PUSHLINE_FCM_ENDPOINT`: where FCM's HTTP v1 API is (an emulator, in tests)."""

    model_config = SettingsConfigDict(env_prefix="PUSHLINE_FCM_", frozen=True, extra="ignore")

    endpoint: HttpURL = "https://fcm.googleapis.com"


def encoder() -> Callable[[messaging.Message], dict[str, Any]]:
    """firebase-admin's encoder of a `Message` into the v1 API's JSON.

    Raises DependencyError when the installed firebase-admin no longer has it where 7.7.0
    has it (`_MessagingService.encode_message`).
    """
    service_class = getattr(messaging, "_MessagingService", None)
    encode = getattr(service_class, "encode_message", None)
    if not callable(encode):
        raise DependencyError(
            "firebase-admin no longer has _MessagingService.encode_message; "
            "Pushline needs firebase-admin==7.7.0 to encode FCM messages"
        )
    return encode  # type: ignore[no-any-return]


def build_message(job: PushJob) -> messaging.Message:
    """The FCM v1 message for a job: notification, data, and android/apns/webpush options."""
    options = job.options
    content = job.notification
    alert = bool(content.title or content.body)
    notification = (
        messaging.Notification(
            title=content.title or None, body=content.body or None, image=content.image_url
        )
        if alert or content.image_url
        else None
    )
    apns_headers = {"apns-priority": _APNS_PRIORITY[options.priority]}
    if options.ttl is not None:
        expiration = 0 if options.ttl == 0 else int(job.accepted_at.timestamp()) + options.ttl
        apns_headers["apns-expiration"] = str(expiration)
    if options.collapse_key:
        apns_headers["apns-collapse-id"] = options.collapse_key
    aps = messaging.Aps(mutable_content=True if content.image_url else None)
    if not alert:
        # A data-only message: iOS wakes the app only for background pushes at priority 5.
        aps = messaging.Aps(content_available=True)
        apns_headers["apns-priority"] = "5"
        apns_headers["apns-push-type"] = "background"
    webpush_headers: dict[str, str] = {"Urgency": options.priority}
    if options.ttl is not None:
        webpush_headers["TTL"] = str(options.ttl)
    with warnings.catch_warnings():
        # 7.7 deprecates `token` for `fid` (Firebase installation ids); device registration
        # tokens are still addressed as `token` by the v1 API.
        warnings.simplefilter("ignore", DeprecationWarning)
        return messaging.Message(
            token=job.token,
            notification=notification,
            data=dict(job.data) or None,
            android=messaging.AndroidConfig(
                collapse_key=options.collapse_key,
                priority=options.priority,
                ttl=options.ttl,
            ),
            apns=messaging.APNSConfig(
                headers=apns_headers,
                payload=messaging.APNSPayload(aps=aps)
                if aps.mutable_content or aps.content_available
                else None,
            ),
            webpush=messaging.WebpushConfig(headers=webpush_headers),
        )


def _result_of(status: int, body: bytes, retry_after: str | None) -> Result:
    """The result of one FCM answer: its `name` on success, else its classified error."""
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if 200 <= status < 300:
        name = document.get("name") if isinstance(document, dict) else None
        return Result.success(name if isinstance(name, str) else None)
    status_name: str | None = None
    message: str | None = None
    details: list[Mapping[str, Any]] = []
    error = document.get("error") if isinstance(document, dict) else None
    if isinstance(error, dict):
        status_name = error.get("status") if isinstance(error.get("status"), str) else None
        message = error.get("message") if isinstance(error.get("message"), str) else None
        raw_details = error.get("details")
        if isinstance(raw_details, list):
            details = [detail for detail in raw_details if isinstance(detail, dict)]
    reason = FCMErrors.error_code(details) or status_name or str(status)
    return Result.failure(
        "fcm",
        FCMProvider.classify(status, status_name, details),
        reason=reason,
        detail=message,
        status=status,
        retry_after=parse_retry_after(retry_after),
    )


def _about_our_token(result: Result) -> bool:
    """Whether a 401 may be cured by a fresh access token: not when FCM says the app's APNs
    or Web Push credentials failed (`THIRD_PARTY_AUTH_ERROR`), which no token changes."""
    return result.status == 401 and result.reason != "THIRD_PARTY_AUTH_ERROR"


class FCMProvider(Provider):
    """FCM for one app's service account."""

    name: ClassVar = "fcm"
    title: ClassVar = "FCM"
    credentials_model: ClassVar = FCMCredentials
    settings_model: ClassVar = FCMSettings
    # FCM tokens run to ~200 characters.
    token_limit: ClassVar = 1024
    # Of `notification` + `data`:
    # https://firebase.google.com/docs/cloud-messaging/concept-options#notifications_and_data_messages
    payload_limit: ClassVar = 4096
    TIMEOUT: ClassVar[float] = 30.0

    @classmethod
    def claim(cls, platform: Platform, token: str, *, web_subscription: bool) -> Claim:
        """FCM reaches every platform: it takes what no other provider claims."""
        return "fallback"

    @classmethod
    def document(cls, notification: Content, data: Mapping[str, str]) -> dict[str, Any]:
        """Raises MessageInvalidError for data keys FCM reserves."""
        bad = [
            key for key in data if key in _RESERVED or key.lower().startswith(_RESERVED_PREFIXES)
        ]
        if bad:
            raise MessageInvalidError(
                f"data keys reserved by FCM: {sorted(bad)}",
                provider="fcm",
                reason="ReservedDataKey",
            )
        return super().document(notification, data)

    @classmethod
    def classify(
        cls,
        status: int | None,
        code: str | None = None,
        details: Sequence[Mapping[str, Any]] = (),
    ) -> ErrorClass:
        """`code` is FCM's `error.status`, `details` its `error.details`, whose FcmError
        `errorCode` wins over `code`."""
        fcm_code = FCMErrors.error_code(details) or code
        if fcm_code == "INVALID_ARGUMENT":
            fields = FCMErrors.violated_fields(details)
            if fields and not any(field in FCMErrors.TOKEN_FIELDS for field in fields):
                return MESSAGE_INVALID
            return INVALID_TOKEN
        if fcm_code is not None and fcm_code in FCMErrors.CODES:
            return FCMErrors.CODES[fcm_code]
        return by_status(status, not_found=AUTH_CONFIG)

    def __init__(self, credentials: FCMCredentials, settings: FCMSettings) -> None:
        """Raises ProviderAuthError when firebase-admin refuses the service account, and
        DependencyError when the installed firebase-admin cannot encode messages."""
        try:
            certificate = firebase_credentials.Certificate(dict(credentials.service_account))
        except (ValueError, TypeError) as exc:
            raise ProviderAuthError(
                "firebase-admin refused the service account",
                provider="fcm",
                reason="BadServiceAccount",
            ) from exc
        self._encode = encoder()
        self._credential = certificate.get_credential()
        self._url = f"{settings.endpoint}/v1/projects/{credentials.project_id}/messages:send"
        self._session = transport.Session(transport.pool, self.TIMEOUT)
        self._lock = asyncio.Lock()

    async def send(self, jobs: Sequence[PushJob]) -> list[Result]:
        """Send each job as one FCM message; verify jobs as `validate_only` requests."""
        results: list[Result | None] = [None] * len(jobs)
        bodies: list[tuple[int, bytes]] = []
        # Jobs of one notification share everything but the token: built, checked and
        # encoded once per call (`build_message` with the first job's token).
        templates: dict[tuple[Any, ...], dict[str, Any] | Result] = {}
        for index, job in enumerate(jobs):
            key = (job.notification, job.options, job.accepted_at, tuple(job.data.items()))
            template = templates.get(key)
            if template is None:
                template = templates[key] = self._template(job)
            if isinstance(template, Result):
                results[index] = template
                continue
            document: dict[str, Any] = {"message": {**template, "token": job.token}}
            if job.kind == "verify":
                document["validate_only"] = True
            bodies.append((index, json.dumps(document, separators=(",", ":")).encode()))
        if bodies:
            refused = await self._prepare()
            if refused is None:
                # One token, one set of headers for the whole call.
                headers = self._headers()
                answers = await asyncio.gather(*(self._post(body, headers) for _, body in bodies))
            else:
                answers = [refused] * len(bodies)
            for (index, _), answer in zip(bodies, answers, strict=True):
                results[index] = answer
        return [result for result in results if result is not None]

    async def aclose(self) -> None:
        """Close the connections."""
        await self._session.aclose()

    def _template(self, job: PushJob) -> dict[str, Any] | Result:
        """The job's encoded message without its token, or the failure of every such job."""
        try:
            build_payload(FCMProvider, job.notification, job.data)
            template = self._encode(build_message(job))
        except MessageInvalidError as exc:
            return Result.from_error(exc)
        except ValueError as exc:  # firebase-admin's own validation
            return Result.failure(
                "fcm", ErrorClass.MESSAGE_INVALID, reason="InvalidMessage", detail=str(exc)
            )
        del template["token"]
        return template

    async def _prepare(self) -> Result | None:
        """Have a fresh OAuth token; the failure for all, if any."""
        async with self._lock:
            if self._credential.valid:
                return None
            return await self._refresh()

    async def _refresh(self) -> Result | None:
        """Refresh the OAuth token in a thread (the lock held); the failure, if any."""
        try:
            await asyncio.to_thread(self._credential.refresh, auth_requests.Request())
        except auth_exceptions.RefreshError as exc:
            if exc.retryable:
                return Result.failure(
                    "fcm", ErrorClass.RETRYABLE, reason="TokenRefresh", detail=str(exc)[:500]
                )
            return Result.failure(
                "fcm", ErrorClass.AUTH_CONFIG, reason="TokenRefresh", detail=str(exc)[:500]
            )
        except auth_exceptions.TransportError as exc:
            return Result.failure(
                "fcm", ErrorClass.RETRYABLE, reason="TokenTransport", detail=str(exc)[:500]
            )
        return None

    def _headers(self) -> dict[str, str]:
        """firebase-admin's headers with the current access token."""
        headers = dict(HEADERS)
        self._credential.apply(headers)
        return headers

    async def _post(self, body: bytes, headers: dict[str, str]) -> Result:
        """One message, repeated with a fresh token after a 401 (at most REFRESHES times)."""
        attempt = 0
        while True:
            try:
                async with self._session.get().post(
                    self._url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    answer = await response.read()
                    result = _result_of(
                        response.status, answer, response.headers.get("Retry-After")
                    )
            except transport.UNANSWERED as exc:
                return transport.unanswered("fcm", exc)
            if attempt == REFRESHES or not _about_our_token(result):
                return result
            async with self._lock:
                # Concurrent requests that met the same stale token refresh it once.
                refused = await self._refresh() if self._headers() == headers else None
            if refused is not None:
                return refused
            headers = self._headers()
            attempt += 1
