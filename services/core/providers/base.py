"""The provider interface: send a batch of jobs, get one result per job, in order.

A provider never raises for what a provider answered about a job: a rejected token is the
`invalid_token` outcome, a temporary failure is a `retry` result whose `error` is a
`ProviderUnavailableError` carrying `retry_after`, and anything else that will not get
better by retrying is a `failed` result whose `error` is a `ProviderRejectedError`. The
sender owns the retry policy; providers do not retry on their own.
"""

from __future__ import annotations

import email.utils
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ValidationError

from services.core.errors import (
    MessageInvalidError,
    ProviderAuthError,
    ProviderQuotaError,
    ProviderRejectedError,
    ProviderUnavailableError,
)
from services.core.events import PushJob
from services.core.providers.classify import ErrorClass, ProviderName
from services.core.settings import Settings

SendOutcome = Literal["success", "invalid_token", "retry", "failed"]

# When a provider asks us to slow down without saying for how long.
DEFAULT_RETRY_AFTER = 1.0
DEFAULT_QUOTA_RETRY_AFTER = 10.0


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from an HTTP `Retry-After` value (delta seconds or an HTTP date).

    None when the header is absent or unreadable.
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, moment.timestamp() - current)


_OUTCOMES: dict[ErrorClass, SendOutcome] = {
    ErrorClass.INVALID_TOKEN: "invalid_token",
    ErrorClass.MESSAGE_INVALID: "failed",
    ErrorClass.AUTH_CONFIG: "failed",
    ErrorClass.RETRYABLE: "retry",
    ErrorClass.QUOTA: "retry",
}


@dataclass(frozen=True, slots=True)
class Result:
    """What the provider answered for one job.

    `reason` is the provider's own code (FCM `UNREGISTERED`, APNs `BadDeviceToken`, Web
    Push `410`, ...), `detail` its human-readable message, `invalid_since` the moment APNs
    says the token stopped being valid (410 answers only). `maybe_delivered`: no answer
    came, but the request may have reached the provider (a timeout or a reset after it
    was sent), so a retry may reach the device a second time.
    """

    outcome: SendOutcome
    error_class: ErrorClass | None = None
    reason: str | None = None
    detail: str | None = None
    status: int | None = None
    provider_message_id: str | None = None
    invalid_since: datetime | None = None
    maybe_delivered: bool = False
    error: ProviderUnavailableError | ProviderRejectedError | None = None

    @property
    def retry_after(self) -> float | None:
        """Seconds to wait before retrying, for `retry` results; None otherwise."""
        if isinstance(self.error, ProviderUnavailableError):
            return self.error.retry_after
        return None

    @classmethod
    def success(cls, provider_message_id: str | None, *, status: int | None = 200) -> Result:
        """A delivered (or, for verify jobs, validated) message."""
        return cls(outcome="success", status=status, provider_message_id=provider_message_id)

    @classmethod
    def failure(
        cls,
        provider: ProviderName,
        error_class: ErrorClass,
        *,
        reason: str,
        detail: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        invalid_since: datetime | None = None,
        maybe_delivered: bool = False,
    ) -> Result:
        """The result of a classified error answer, with the typed error it stands for."""
        message = f"{provider} answered {status or 'nothing'} {reason}" + (
            f": {detail}" if detail else ""
        )
        error: ProviderUnavailableError | ProviderRejectedError | None
        if error_class is ErrorClass.QUOTA:
            error = ProviderQuotaError(
                message,
                provider=provider,
                reason=reason,
                status=status,
                retry_after=retry_after if retry_after is not None else DEFAULT_QUOTA_RETRY_AFTER,
            )
        elif error_class is ErrorClass.RETRYABLE:
            error = ProviderUnavailableError(
                message,
                provider=provider,
                reason=reason,
                status=status,
                retry_after=retry_after if retry_after is not None else DEFAULT_RETRY_AFTER,
            )
        elif error_class is ErrorClass.AUTH_CONFIG:
            error = ProviderAuthError(message, provider=provider, reason=reason, status=status)
        elif error_class is ErrorClass.MESSAGE_INVALID:
            error = MessageInvalidError(message, provider=provider, reason=reason, status=status)
        else:
            error = None  # an invalid token is an outcome, not an error
        return cls(
            outcome=_OUTCOMES[error_class],
            error_class=error_class,
            reason=reason,
            detail=detail,
            status=status,
            invalid_since=invalid_since,
            maybe_delivered=maybe_delivered,
            error=error,
        )

    @classmethod
    def from_error(cls, error: ProviderUnavailableError | ProviderRejectedError) -> Result:
        """The result for a job that failed before reaching the provider."""
        if isinstance(error, ProviderQuotaError):
            error_class = ErrorClass.QUOTA
        elif isinstance(error, ProviderUnavailableError):
            error_class = ErrorClass.RETRYABLE
        elif isinstance(error, ProviderAuthError):
            error_class = ErrorClass.AUTH_CONFIG
        else:
            error_class = ErrorClass.MESSAGE_INVALID
        return cls(
            outcome=_OUTCOMES[error_class],
            error_class=error_class,
            reason=error.reason,
            detail=str(error),
            status=error.status,
            error=error,
        )


class Provider(ABC):
    """A push provider adapter: FCM, APNs, Web Push (and whatever comes next).

    One instance serves one app with that app's credentials and keeps its clients
    (connections, OAuth tokens, VAPID JWTs) for reuse; the registry caches it per app.
    """

    name: ClassVar[ProviderName]
    # The shape of the decrypted credentials this provider takes.
    credentials_model: ClassVar[type[BaseModel]]

    def __init__(self, credentials: BaseModel, settings: Settings) -> None:  # noqa: B027
        """Build the provider's clients for one app; subclasses narrow `credentials`."""

    @classmethod
    def from_credentials(cls, credentials: Mapping[str, Any], settings: Settings) -> Self:
        """Validate an app's decrypted credentials dict and build the provider.

        Raises ProviderAuthError when the credentials do not have the provider's shape or
        cannot be used.
        """
        try:
            model = cls.credentials_model.model_validate(credentials)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'credentials'}: {error['msg']}"
                for error in exc.errors()
            )
            raise ProviderAuthError(
                f"{cls.name} credentials are malformed: {problems}",
                provider=cls.name,
                reason="MalformedCredentials",
            ) from exc
        return cls(model, settings)

    @abstractmethod
    async def send(self, jobs: Sequence[PushJob]) -> list[Result]:
        """Send each job; return one `Result` per job, in the jobs' order.

        `kind="verify"` jobs are validated without delivery where the provider offers it.
        Raises nothing for what the provider answered: see the module docstring.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most providers need it
        """Release connections and clients; the provider is unusable afterwards."""
