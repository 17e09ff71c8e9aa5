"""What a provider's error answer means for Pushline: one pure function and its tables.

`classify(provider, status, code, details)` turns a provider's answer into one of five
classes. It never looks at human-readable messages: for FCM it reads the structured
`details[].errorCode` (and `google.rpc.BadRequest` field violations), for APNs the JSON
`reason`, for Web Push the HTTP status alone (RFC 8030 defines no error codes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, ClassVar, Final, Literal

ProviderName = Literal["fcm", "apns", "webpush"]


class ErrorClass(StrEnum):
    """The five things a provider's error answer can mean."""

    INVALID_TOKEN = "invalid_token"  # noqa: S105 - the device token is gone: invalidate it
    MESSAGE_INVALID = "message_invalid"  # this message is wrong: fail it, keep the device
    AUTH_CONFIG = "auth_config"  # the app's credentials/config are wrong: dead-letter, replay
    RETRYABLE = "retryable"  # temporary: retry with backoff
    QUOTA = "quota"  # throttled: retry no sooner than Retry-After


INVALID_TOKEN: Final = ErrorClass.INVALID_TOKEN
MESSAGE_INVALID: Final = ErrorClass.MESSAGE_INVALID
AUTH_CONFIG: Final = ErrorClass.AUTH_CONFIG
RETRYABLE: Final = ErrorClass.RETRYABLE
QUOTA: Final = ErrorClass.QUOTA


def _by_status(status: int | None, *, not_found: ErrorClass) -> ErrorClass:
    """The class of an answer that carries no code we know, from its HTTP status alone."""
    if status is None or status >= 500 or status == 408:
        return RETRYABLE  # no answer at all (connection error, timeout) or a server error
    if status == 429:
        return QUOTA
    if status in (401, 403):
        return AUTH_CONFIG
    if status in (404, 410):
        return not_found
    return MESSAGE_INVALID


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


def classify(
    provider: ProviderName,
    status: int | None,
    code: str | None = None,
    details: Sequence[Mapping[str, Any]] = (),
) -> ErrorClass:
    """Classify one error answer of a provider.

    `status` is the HTTP status (None when no answer arrived: connection error, timeout);
    `code` the provider's error code (FCM `error.status`, APNs `reason`); `details` FCM's
    `error.details`, whose FcmError `errorCode` wins over `code`. Pure; raises nothing.
    """
    if provider == "fcm":
        fcm_code = FCMErrors.error_code(details) or code
        if fcm_code == "INVALID_ARGUMENT":
            fields = FCMErrors.violated_fields(details)
            if fields and not any(field in FCMErrors.TOKEN_FIELDS for field in fields):
                return MESSAGE_INVALID
            return INVALID_TOKEN
        if fcm_code is not None and fcm_code in FCMErrors.CODES:
            return FCMErrors.CODES[fcm_code]
        return _by_status(status, not_found=AUTH_CONFIG)
    if provider == "apns":
        if code is not None and code in APNsErrors.REASONS:
            return APNsErrors.REASONS[code]
        return _by_status(status, not_found=MESSAGE_INVALID)
    if status is not None and status in WebPushErrors.STATUSES:
        return WebPushErrors.STATUSES[status]
    return _by_status(status, not_found=INVALID_TOKEN)
