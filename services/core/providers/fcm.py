"""FCM HTTP v1 through firebase-admin's async batch send.

firebase-admin is used as published, with two adjustments made in one place,
`bind_messaging`, the only code that touches its private messaging service:
- the send URL: firebase-admin has no setting for it (it copies the class constant
  `_MessagingService.FCM_URL` into the service's `_fcm_url`), and Pushline must reach
  `PUSHLINE_FCM_ENDPOINT`;
- its retries: its async client retries 500 and 503 four times with 0.5 s exponential
  backoff and ignores Retry-After, which would hide seconds of waiting inside one send and
  multiply the sender's own attempts; the client is rebuilt with retries off, so every
  5xx reaches the sender's retry policy after exactly one request.
It still refreshes the OAuth token and repeats a request on 401 (at most twice); a 401 that
survives that is `auth_config`. OAuth tokens come from the service account's `token_uri`;
this adapter refreshes them in a thread before a batch, because google-auth refreshes
synchronously with `requests` and would otherwise block the event loop.
"""

from __future__ import annotations

import asyncio
import uuid
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final

import firebase_admin
import httpx
from firebase_admin import credentials as firebase_credentials
from firebase_admin import exceptions as firebase_exceptions
from firebase_admin import messaging
from google.auth import exceptions as auth_exceptions
from google.auth.transport import requests as auth_requests

from services.core.credentials import FCMCredentials
from services.core.errors import DependencyError, MessageInvalidError, ProviderAuthError
from services.core.events import PushJob
from services.core.providers.base import Provider, Result, parse_retry_after
from services.core.providers.classify import ErrorClass, FCMErrors, classify
from services.core.providers.payload import build_payload
from services.core.settings import Settings

# firebase-admin refuses more than 500 messages per batch call.
MAX_BATCH: Final = 500
_APNS_PRIORITY: Final = {"high": "10", "normal": "5"}


async def bind_messaging(app: firebase_admin.App, endpoint: str, http_timeout: float) -> None:
    """Point `app`'s messaging service at `endpoint` and turn its HTTP retries off.

    The one place Pushline relies on firebase-admin's private messaging service
    (`_MessagingService.FCM_URL`, `_fcm_url`, `_async_client`, `HttpxAsyncClient`,
    `HttpxRetry`); tested against the pinned release. Raises DependencyError when the
    installed firebase-admin no longer has them where 7.7.0 has them.
    """
    # firebase-admin's private modules: the imports fail loudly if a release moves them.
    from firebase_admin import _http_client, _retry

    service_class = getattr(messaging, "_MessagingService", None)
    template = getattr(service_class, "FCM_URL", None)
    service = messaging._get_messaging_service(app)
    project = app.project_id
    if not isinstance(template, str) or getattr(service, "_fcm_url", None) != template.format(
        project
    ):
        raise DependencyError(
            "firebase-admin no longer keeps the FCM URL in _MessagingService.FCM_URL/_fcm_url; "
            "Pushline needs firebase-admin==7.7.0 to reach PUSHLINE_FCM_ENDPOINT"
        )
    old_client = getattr(service, "_async_client", None)
    if not isinstance(old_client, _http_client.HttpxAsyncClient):
        raise DependencyError(
            "firebase-admin's messaging service has no _async_client to configure; "
            "Pushline needs firebase-admin==7.7.0"
        )
    service._fcm_url = f"{endpoint}/v1/projects/{project}/messages:send"
    service._async_client = _http_client.HttpxAsyncClient(
        credential=app.credential.get_credential(),
        timeout=http_timeout,
        retry_config=_retry.HttpxRetry(max_retries=0, status_forcelist=[]),
    )
    await old_client.aclose()


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


def _result_of(response: messaging.SendResponse) -> Result:
    if response.success:
        return Result.success(response.message_id)
    exc = response.exception
    http_response = getattr(exc, "http_response", None)
    if not isinstance(http_response, httpx.Response):
        # No answer: connection refused, timeout, TLS failure.
        cause = getattr(exc, "cause", None) or exc
        return Result.failure(
            "fcm", ErrorClass.RETRYABLE, reason=type(cause).__name__, detail=str(cause)[:500]
        )
    status_name: str | None = None
    message: str | None = None
    details: list[Mapping[str, Any]] = []
    try:
        body = http_response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        status_name = error.get("status") if isinstance(error.get("status"), str) else None
        message = error.get("message") if isinstance(error.get("message"), str) else None
        raw_details = error.get("details")
        if isinstance(raw_details, list):
            details = [detail for detail in raw_details if isinstance(detail, dict)]
    reason = FCMErrors.error_code(details) or status_name or str(http_response.status_code)
    return Result.failure(
        "fcm",
        classify("fcm", http_response.status_code, status_name, details),
        reason=reason,
        detail=message,
        status=http_response.status_code,
        retry_after=parse_retry_after(http_response.headers.get("Retry-After")),
    )


class FCMProvider(Provider):
    """FCM for one app's service account."""

    name: ClassVar = "fcm"
    credentials_model: ClassVar = FCMCredentials
    TIMEOUT: ClassVar[float] = 30.0

    def __init__(self, credentials: FCMCredentials, settings: Settings) -> None:
        """Raises ProviderAuthError when firebase-admin refuses the service account."""
        try:
            certificate = firebase_credentials.Certificate(dict(credentials.service_account))
        except (ValueError, TypeError) as exc:
            raise ProviderAuthError(
                "firebase-admin refused the service account",
                provider="fcm",
                reason="BadServiceAccount",
            ) from exc
        self._app = firebase_admin.initialize_app(
            certificate,
            options={"projectId": credentials.project_id, "httpTimeout": self.TIMEOUT},
            name=f"pushline-{credentials.project_id}-{uuid.uuid4().hex[:8]}",
        )
        self._credential = certificate.get_credential()
        self._endpoint = settings.fcm_endpoint
        self._bound = False
        self._lock = asyncio.Lock()

    async def send(self, jobs: Sequence[PushJob]) -> list[Result]:
        """Send the jobs through `messaging.send_each_async`; verify jobs as dry runs.

        Raises DependencyError (on first use) when the installed firebase-admin is not one
        `bind_messaging` can configure: a deployment error, not a send failure.
        """
        results: list[Result | None] = [None] * len(jobs)
        # Sends first, then dry runs (keyed by `dry_run`).
        ready: dict[bool, list[tuple[int, messaging.Message]]] = {False: [], True: []}
        for index, job in enumerate(jobs):
            try:
                build_payload("fcm", job.notification, job.data)
                message = build_message(job)
            except MessageInvalidError as exc:
                results[index] = Result.from_error(exc)
                continue
            except ValueError as exc:  # firebase-admin's own validation
                results[index] = Result.failure(
                    "fcm", ErrorClass.MESSAGE_INVALID, reason="InvalidMessage", detail=str(exc)
                )
                continue
            ready[job.kind == "verify"].append((index, message))
        if ready[True] or ready[False]:
            refused = await self._prepare()
            for dry_run, batch in ready.items():
                for start in range(0, len(batch), MAX_BATCH):
                    chunk = batch[start : start + MAX_BATCH]
                    answers = (
                        [refused] * len(chunk)
                        if refused is not None
                        else await self._send_chunk([message for _, message in chunk], dry_run)
                    )
                    for (index, _), answer in zip(chunk, answers, strict=True):
                        results[index] = answer
        return [result for result in results if result is not None]

    async def aclose(self) -> None:
        """Close the HTTP client and delete the firebase-admin app."""
        service = messaging._get_messaging_service(self._app)
        await service._async_client.aclose()
        # delete_app closes the service with asyncio.run(), which needs a thread of its own.
        await asyncio.to_thread(firebase_admin.delete_app, self._app)

    async def _prepare(self) -> Result | None:
        """Bind the endpoint once and have a fresh OAuth token; the failure for all, if any."""
        async with self._lock:
            if not self._bound:
                await bind_messaging(self._app, self._endpoint, self.TIMEOUT)
                self._bound = True
            if self._credential.valid:
                return None
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

    async def _send_chunk(self, messages: list[messaging.Message], dry_run: bool) -> list[Result]:
        try:
            batch = await messaging.send_each_async(messages, dry_run=dry_run, app=self._app)
        except firebase_exceptions.FirebaseError as exc:
            # send_each_async wraps anything unexpected (e.g. an auth failure mid-batch).
            cause = exc.cause
            if isinstance(cause, auth_exceptions.RefreshError) and not cause.retryable:
                failure = Result.failure(
                    "fcm", ErrorClass.AUTH_CONFIG, reason="TokenRefresh", detail=str(cause)[:500]
                )
            else:
                failure = Result.failure(
                    "fcm", ErrorClass.RETRYABLE, reason=type(exc).__name__, detail=str(exc)[:500]
                )
            return [failure] * len(messages)
        return [_result_of(response) for response in batch.responses]
