"""Every provider error code, through the one classification function."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from services.core.providers.apns import APNsErrors
from services.core.providers.classify import ErrorClass
from services.core.providers.fcm import FCMErrors
from services.core.providers.registry import provider_class
from services.core.providers.webpush import WebPushErrors


def classify(
    provider: str,
    status: int | None,
    code: str | None = None,
    details: Sequence[Mapping[str, Any]] = (),
) -> ErrorClass:
    return provider_class(provider).classify(status, code, details)


INVALID_TOKEN = ErrorClass.INVALID_TOKEN
MESSAGE_INVALID = ErrorClass.MESSAGE_INVALID
AUTH_CONFIG = ErrorClass.AUTH_CONFIG
RETRYABLE = ErrorClass.RETRYABLE
QUOTA = ErrorClass.QUOTA


def fcm_error(code: str) -> list[dict[str, Any]]:
    return [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]


def bad_request(*fields: str) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": field, "description": "Invalid value"} for field in fields],
    }


# (HTTP status FCM answers with, FcmError.errorCode, expected class)
FCM_CODES = [
    (404, "UNREGISTERED", INVALID_TOKEN),
    (400, "INVALID_ARGUMENT", INVALID_TOKEN),
    (403, "SENDER_ID_MISMATCH", AUTH_CONFIG),
    (401, "THIRD_PARTY_AUTH_ERROR", AUTH_CONFIG),
    (401, "APNS_AUTH_ERROR", AUTH_CONFIG),
    (429, "QUOTA_EXCEEDED", QUOTA),
    (503, "UNAVAILABLE", RETRYABLE),
    (500, "INTERNAL", RETRYABLE),
    (500, "UNSPECIFIED_ERROR", RETRYABLE),
]

# Canonical google.rpc statuses in `error.status`, when no FcmError detail is present.
FCM_STATUSES = [
    (401, "UNAUTHENTICATED", AUTH_CONFIG),
    (403, "PERMISSION_DENIED", AUTH_CONFIG),
    (404, "NOT_FOUND", AUTH_CONFIG),
    (429, "RESOURCE_EXHAUSTED", QUOTA),
    (504, "DEADLINE_EXCEEDED", RETRYABLE),
    (400, "FAILED_PRECONDITION", MESSAGE_INVALID),
    (400, "INVALID_ARGUMENT", INVALID_TOKEN),
    (404, "UNREGISTERED", INVALID_TOKEN),
    (429, "QUOTA_EXCEEDED", QUOTA),
    (503, "UNAVAILABLE", RETRYABLE),
    (500, "INTERNAL", RETRYABLE),
    (403, "SENDER_ID_MISMATCH", AUTH_CONFIG),
    (401, "THIRD_PARTY_AUTH_ERROR", AUTH_CONFIG),
    (401, "APNS_AUTH_ERROR", AUTH_CONFIG),
    (500, "UNSPECIFIED_ERROR", RETRYABLE),
]


@pytest.mark.parametrize(("status", "code", "expected"), FCM_CODES)
def test_fcm_error_code_from_details(status: int, code: str, expected: ErrorClass) -> None:
    # error.status disagrees on purpose: the FcmError errorCode decides.
    assert classify("fcm", status, "INTERNAL", fcm_error(code)) is expected


@pytest.mark.parametrize(("status", "code", "expected"), FCM_STATUSES)
def test_fcm_canonical_status_without_details(status: int, code: str, expected: ErrorClass) -> None:
    assert classify("fcm", status, code) is expected


def test_every_fcm_table_entry_is_tested() -> None:
    tested = {code for _, code, _ in FCM_CODES} | {code for _, code, _ in FCM_STATUSES}
    assert tested == set(FCMErrors.CODES)


def test_seed_003_invalid_registration_token_invalidates() -> None:
    # The seed's answer for a malformed token: no field violation, FcmError INVALID_ARGUMENT.
    assert classify("fcm", 400, "INVALID_ARGUMENT", fcm_error("INVALID_ARGUMENT")) is INVALID_TOKEN


def test_fcm_invalid_argument_naming_the_token_invalidates() -> None:
    details = [*fcm_error("INVALID_ARGUMENT"), bad_request("message.token")]
    assert classify("fcm", 400, "INVALID_ARGUMENT", details) is INVALID_TOKEN


def test_fcm_invalid_argument_about_the_message_keeps_the_device() -> None:
    details = [*fcm_error("INVALID_ARGUMENT"), bad_request("message.android.ttl")]
    assert classify("fcm", 400, "INVALID_ARGUMENT", details) is MESSAGE_INVALID
    only_bad_request = [bad_request("message.data[0].value")]
    assert classify("fcm", 400, "INVALID_ARGUMENT", only_bad_request) is MESSAGE_INVALID


def test_fcm_message_strings_are_never_read() -> None:
    # Same structure, different human text: same class.
    assert classify("fcm", 400, "INVALID_ARGUMENT", []) is INVALID_TOKEN


def test_fcm_unknown_code_falls_back_to_the_status() -> None:
    assert classify("fcm", 503, "SOMETHING_NEW", fcm_error("SOMETHING_NEWER")) is RETRYABLE
    assert classify("fcm", 429, None) is QUOTA
    assert classify("fcm", 401, None) is AUTH_CONFIG
    assert classify("fcm", 404, None) is AUTH_CONFIG
    assert classify("fcm", 400, None) is MESSAGE_INVALID
    assert classify("fcm", None, None) is RETRYABLE


APNS_REASONS = [
    (400, "BadCollapseId", MESSAGE_INVALID),
    (400, "BadDeviceToken", INVALID_TOKEN),
    (400, "BadExpirationDate", MESSAGE_INVALID),
    (400, "BadMessageId", MESSAGE_INVALID),
    (400, "BadPriority", MESSAGE_INVALID),
    (400, "BadTopic", AUTH_CONFIG),
    (400, "DeviceTokenNotForTopic", AUTH_CONFIG),
    (400, "DuplicateHeaders", MESSAGE_INVALID),
    (400, "IdleTimeout", RETRYABLE),
    (400, "InvalidPushType", MESSAGE_INVALID),
    (400, "MissingDeviceToken", MESSAGE_INVALID),
    (400, "MissingTopic", AUTH_CONFIG),
    (400, "PayloadEmpty", MESSAGE_INVALID),
    (400, "TopicDisallowed", AUTH_CONFIG),
    (403, "BadCertificate", AUTH_CONFIG),
    (403, "BadCertificateEnvironment", AUTH_CONFIG),
    (403, "ExpiredProviderToken", AUTH_CONFIG),
    (403, "Forbidden", AUTH_CONFIG),
    (403, "InvalidProviderToken", AUTH_CONFIG),
    (403, "MissingProviderToken", AUTH_CONFIG),
    (403, "UnrelatedKeyIdInToken", AUTH_CONFIG),
    (403, "BadEnvironmentKeyIdInToken", AUTH_CONFIG),
    (404, "BadPath", MESSAGE_INVALID),
    (405, "MethodNotAllowed", MESSAGE_INVALID),
    (410, "ExpiredToken", INVALID_TOKEN),
    (410, "Unregistered", INVALID_TOKEN),
    (413, "PayloadTooLarge", MESSAGE_INVALID),
    (429, "TooManyProviderTokenUpdates", QUOTA),
    (429, "TooManyRequests", QUOTA),
    (500, "InternalServerError", RETRYABLE),
    (503, "ServiceUnavailable", RETRYABLE),
    (503, "Shutdown", RETRYABLE),
]


@pytest.mark.parametrize(("status", "reason", "expected"), APNS_REASONS)
def test_apns_reason(status: int, reason: str, expected: ErrorClass) -> None:
    assert classify("apns", status, reason) is expected


def test_every_apns_table_entry_is_tested() -> None:
    assert {reason for _, reason, _ in APNS_REASONS} == set(APNsErrors.REASONS)


def test_apns_unknown_reason_falls_back_to_the_status() -> None:
    assert classify("apns", 410, "SomethingNew") is MESSAGE_INVALID
    assert classify("apns", 429, None) is QUOTA
    assert classify("apns", 403, None) is AUTH_CONFIG
    assert classify("apns", 500, None) is RETRYABLE
    assert classify("apns", None, None) is RETRYABLE


WEBPUSH_STATUSES = [
    (400, MESSAGE_INVALID),
    (401, AUTH_CONFIG),
    (403, AUTH_CONFIG),
    (404, INVALID_TOKEN),
    (410, INVALID_TOKEN),
    (413, MESSAGE_INVALID),
    (429, QUOTA),
]


@pytest.mark.parametrize(("status", "expected"), WEBPUSH_STATUSES)
def test_webpush_status(status: int, expected: ErrorClass) -> None:
    assert classify("webpush", status) is expected


def test_every_webpush_table_entry_is_tested() -> None:
    assert {status for status, _ in WEBPUSH_STATUSES} == set(WebPushErrors.STATUSES)


@pytest.mark.parametrize(
    ("status", "expected"),
    [(500, RETRYABLE), (502, RETRYABLE), (503, RETRYABLE), (408, RETRYABLE), (None, RETRYABLE)],
)
def test_webpush_server_errors_and_no_answer_are_retryable(
    status: int | None, expected: ErrorClass
) -> None:
    assert classify("webpush", status) is expected


def test_tables_link_the_provider_docs() -> None:
    for table in (FCMErrors, APNsErrors, WebPushErrors):
        assert "https://" in (table.__doc__ or "")
