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
from services.core.events import Content, Options, PushJob
from services.core.fields import Platform
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


# The topic a credentials check addresses in a `validate_only` send: any well-formed topic
# will do, since a dry run reaches nobody and FCM answers it once the request is authorised.
CHECK_TOPIC: Final = "pushline-credentials-check"
# Data keys the provider keeps for itself.
# https://firebase.google.com/docs/cloud-messaging/concept-options#data_messages
_RESERVED: Final = frozenset({"from", "notification", "message_type"})
_RESERVED_PREFIXES: Final = ("google", "gcm")
# The data key that carries `click_url` to the app (Android's intent extras, an iOS app's
# payload through FCM, a page's data).
CLICK_KEY: Final = "click_url"


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


def message_data(data: Mapping[str, str], options: Options) -> dict[str, str]:
    """The message's `data`: the send's, the click URL, then `options.fcm.data`."""
    merged = dict(data)
    if options.click_url is not None:
        merged[CLICK_KEY] = options.click_url
    if options.fcm is not None:
        merged.update(options.fcm.data)
    return merged


def _merged(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `override` merged in, object into object, anything else replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def message_json(
    job: PushJob, encode: Callable[[messaging.Message], dict[str, Any]]
) -> dict[str, Any]:
    """The job's v1 message JSON: `build_message` encoded, `options.fcm` merged last.

    Raises ValueError where firebase-admin refuses the message."""
    document = encode(build_message(job))
    override = job.options.fcm
    return document if override is None else _merged(document, override.provider_json())


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
    loc_keys = options.title_loc_key is not None or options.body_loc_key is not None
    aps = messaging.Aps(
        # FCM turns the notification into `aps.alert`; the localisation keys join it.
        alert=messaging.ApsAlert(
            title=content.title or None,
            body=content.body or None,
            title_loc_key=options.title_loc_key,
            title_loc_args=list(options.title_loc_args) or None,
            loc_key=options.body_loc_key,
            loc_args=list(options.body_loc_args) or None,
        )
        if loc_keys
        else None,
        mutable_content=True if content.image_url or options.mutable_content else None,
        badge=options.badge,
        sound=options.sound,
        thread_id=options.thread_id,
        category=options.category,
        custom_data={"interruption-level": options.interruption_level}
        if options.interruption_level
        else None,
    )
    android_notification = None
    if not alert:
        # A data-only message: iOS wakes the app only for background pushes at priority 5.
        aps = messaging.Aps(content_available=True)
        apns_headers["apns-priority"] = "5"
        apns_headers["apns-push-type"] = "background"
    elif options.sound or options.category or options.android or options.tag or loc_keys:
        # Only with an alert: `android.notification` alone would make Android show one.
        android_notification = messaging.AndroidNotification(
            sound=options.sound,
            click_action=options.category,
            tag=options.tag,
            title_loc_key=options.title_loc_key,
            title_loc_args=list(options.title_loc_args) or None,
            body_loc_key=options.body_loc_key,
            body_loc_args=list(options.body_loc_args) or None,
            channel_id=options.android.channel_id if options.android else None,
            color=options.android.color if options.android else None,
            icon=options.android.icon if options.android else None,
        )
    webpush_headers: dict[str, str] = {"Urgency": options.priority}
    if options.ttl is not None:
        webpush_headers["TTL"] = str(options.ttl)
    # FCM opens the link when a web notification is clicked, and takes only https.
    link = (
        messaging.WebpushFCMOptions(link=options.click_url)
        if options.click_url is not None and options.click_url.startswith("https://")
        else None
    )
    data = message_data(job.data, options)
    with warnings.catch_warnings():
        # 7.7 deprecates `token` for `fid` (Firebase installation ids); device registration
        # tokens are still addressed as `token` by the v1 API.
        warnings.simplefilter("ignore", DeprecationWarning)
        return messaging.Message(
            token=job.token,
            notification=notification,
            data=data or None,
            android=messaging.AndroidConfig(
                collapse_key=options.collapse_key,
                priority=options.priority,
                ttl=options.ttl,
                notification=android_notification,
            ),
            apns=messaging.APNSConfig(
                headers=apns_headers,
                payload=messaging.APNSPayload(aps=aps)
                if aps.mutable_content
                or aps.content_available
                or aps.badge is not None
                or aps.sound
                or aps.thread_id
                or aps.category
                or aps.custom_data
                or aps.alert
                else None,
            ),
            webpush=messaging.WebpushConfig(headers=webpush_headers, fcm_options=link),
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
    # A project's default quota, 600,000 messages a minute:
    # https://firebase.google.com/docs/cloud-messaging/throttling-and-quotas
    default_quota: ClassVar = 10_000.0
    TIMEOUT: ClassVar[float] = 30.0

    @classmethod
    def claim(cls, platform: Platform, token: str, *, web_subscription: bool) -> Claim:
        """FCM reaches every platform: it takes what no other provider claims."""
        return "fallback"

    @classmethod
    def document(
        cls, notification: Content, data: Mapping[str, str], options: Options
    ) -> dict[str, Any]:
        """The notification and `message_data`, and `options.fcm.android` (counted toward
        the limit, to be safe, though FCM counts only the notification and data). Raises
        MessageInvalidError for data keys FCM or Pushline reserve."""
        merged = message_data(data, options)
        android = options.fcm.android if options.fcm is not None else None
        keys = [*merged, *(key for key, _ in android.data)] if android is not None else merged
        bad = [
            key for key in keys if key in _RESERVED or key.lower().startswith(_RESERVED_PREFIXES)
        ]
        if options.click_url is not None and CLICK_KEY in data:
            bad.append(CLICK_KEY)
        if bad:
            raise MessageInvalidError(
                f"data keys reserved by FCM ({CLICK_KEY} by Pushline, with a click_url): "
                f"{sorted(bad)}",
                provider="fcm",
                reason="ReservedDataKey",
            )
        document = super().document(notification, merged, options)
        if android is not None:
            document["android"] = android.provider_json()
        return document

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
        self._project = credentials.project_id
        self._url = f"{settings.endpoint}/v1/projects/{credentials.project_id}/messages:send"
        self._session = transport.Session(transport.pool, self.TIMEOUT)
        self._lock = asyncio.Lock()

    def quota_scope(self, job: PushJob) -> str:
        """The service account's project: FCM's quota is the project's."""
        return self._project

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

    async def check(self) -> Result:
        """An OAuth token from the service account's `token_uri`, then a `validate_only`
        send to CHECK_TOPIC: 200 when FCM takes the token for the project, the classified
        failure when either refuses."""
        refused = await self._prepare()
        if refused is not None:
            return refused
        document = {"message": {"topic": CHECK_TOPIC}, "validate_only": True}
        body = json.dumps(document, separators=(",", ":")).encode()
        return await self._post(body, self._headers())

    async def aclose(self) -> None:
        """Close the connections."""
        await self._session.aclose()

    def _template(self, job: PushJob) -> dict[str, Any] | Result:
        """The job's encoded message without its token, or the failure of every such job."""
        try:
            build_payload(FCMProvider, job.notification, job.data, job.options)
            template = message_json(job, self._encode)
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
