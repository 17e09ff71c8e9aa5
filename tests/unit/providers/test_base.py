"""Results, their typed errors, and Retry-After parsing."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from services.core.errors import (
    MessageInvalidError,
    PayloadTooLargeError,
    ProviderAuthError,
    ProviderQuotaError,
    ProviderRejectedError,
    ProviderUnavailableError,
    UnavailableError,
)
from services.core.events import PushJob
from services.core.providers.base import (
    DEFAULT_QUOTA_RETRY_AFTER,
    DEFAULT_RETRY_AFTER,
    Provider,
    Result,
    parse_retry_after,
)
from services.core.providers.classify import ErrorClass


@pytest.mark.parametrize(
    ("error_class", "outcome", "error_type"),
    [
        (ErrorClass.INVALID_TOKEN, "invalid_token", type(None)),
        (ErrorClass.MESSAGE_INVALID, "failed", MessageInvalidError),
        (ErrorClass.AUTH_CONFIG, "failed", ProviderAuthError),
        (ErrorClass.RETRYABLE, "retry", ProviderUnavailableError),
        (ErrorClass.QUOTA, "retry", ProviderQuotaError),
    ],
)
def test_each_class_has_its_outcome_and_typed_error(
    error_class: ErrorClass, outcome: str, error_type: type
) -> None:
    result = Result.failure("fcm", error_class, reason="X", status=400)
    assert result.outcome == outcome
    assert type(result.error) is error_type
    if result.error is not None:
        assert (result.error.provider, result.error.reason, result.error.status) == (
            "fcm",
            "X",
            400,
        )


def test_temporary_failures_are_unavailable_errors_with_retry_after() -> None:
    retry = Result.failure("apns", ErrorClass.RETRYABLE, reason="Shutdown")
    quota = Result.failure("apns", ErrorClass.QUOTA, reason="TooManyRequests")
    told = Result.failure("apns", ErrorClass.QUOTA, reason="TooManyRequests", retry_after=42)
    assert isinstance(retry.error, UnavailableError)
    assert isinstance(quota.error, UnavailableError)
    assert (retry.retry_after, quota.retry_after, told.retry_after) == (
        DEFAULT_RETRY_AFTER,
        DEFAULT_QUOTA_RETRY_AFTER,
        42,
    )
    assert Result.failure("apns", ErrorClass.AUTH_CONFIG, reason="Forbidden").retry_after is None
    assert isinstance(
        Result.failure("apns", ErrorClass.AUTH_CONFIG, reason="Forbidden").error,
        ProviderRejectedError,
    )


def test_from_error_keeps_the_error_and_its_class() -> None:
    too_large = PayloadTooLargeError(provider="webpush", size=5000, limit=3993)
    result = Result.from_error(too_large)
    assert (result.outcome, result.error_class, result.reason) == (
        "failed",
        ErrorClass.MESSAGE_INVALID,
        "PayloadTooLarge",
    )
    assert result.error is too_large
    assert "5000 bytes" in (result.detail or "")
    quota = ProviderQuotaError("slow down", provider="fcm", reason="Q", retry_after=3)
    assert Result.from_error(quota).error_class is ErrorClass.QUOTA
    assert Result.from_error(quota).retry_after == 3
    auth = ProviderAuthError("no", provider="fcm", reason="A")
    assert Result.from_error(auth).error_class is ErrorClass.AUTH_CONFIG


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_seconds_or_http_date(header: str | None, expected: float | None) -> None:
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after(header, now=now) == expected


def test_provider_is_abstract_in_send_only() -> None:
    assert Provider.__abstractmethods__ == frozenset({"send"})

    class Nothing(Provider):
        name = "webpush"

        async def send(self, jobs: Sequence[PushJob]) -> list[Result]:
            return [Result.success(None) for _ in jobs]

    with pytest.raises(TypeError):
        Provider()  # type: ignore[abstract, call-arg]
    assert Nothing.__abstractmethods__ == frozenset()
