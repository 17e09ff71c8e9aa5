"""What a provider's error answer means for Pushline: five classes.

Each provider reads its own answers (FCM's `details[].errorCode`, APNs's JSON `reason`, Web
Push's HTTP status) with its own table, in its module (`Provider.classify`); what a code
it does not know means, from the HTTP status alone, is `by_status`. Classification never
looks at human-readable messages.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


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


def by_status(status: int | None, *, not_found: ErrorClass) -> ErrorClass:
    """The class of an answer that carries no code we know, from its HTTP status alone;
    `not_found` is what the provider means by 404 and 410."""
    if status is None or status >= 500 or status == 408:
        return RETRYABLE  # no answer at all (connection error, timeout) or a server error
    if status == 429:
        return QUOTA
    if status in (401, 403):
        return AUTH_CONFIG
    if status in (404, 410):
        return not_found
    return MESSAGE_INVALID
