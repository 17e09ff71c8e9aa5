"""The provider interface: everything Pushline knows of a provider, on its class.

A provider's module holds all of it: its name, the credentials and settings it takes,
the shape of its tokens and which devices it serves, what it carries for a notification
(the payload rules), what its error answers mean, and the client that sends. The registry
lists the modules; topics, routing, classification and the apps' credential slots are
derived from the classes.

Sending: a batch of jobs gets one result per job, in order.

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

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.credentials import ProviderCredentials
from services.core.errors import (
    MessageInvalidError,
    ProviderAuthError,
    ProviderQuotaError,
    ProviderRejectedError,
    ProviderUnavailableError,
)
from services.core.events import Content, FailureReason, Options, PushJob, WebPushSubscription
from services.core.fields import Platform, ProviderName
from services.core.providers.classify import ErrorClass, by_status

SendOutcome = Literal["success", "invalid_token", "retry", "failed"]
# How a provider claims a device (`Provider.claim`): `sole`, no other provider can reach
# it (a Web Push subscription); `preferred`, it is the device's own provider when the app
# has it (an APNs token), another may stand in; `fallback`, it takes what no other claims.
Claim = Literal["sole", "preferred", "fallback"]

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


@dataclass(frozen=True)
class TokenProblem:
    """Why a device token cannot be registered: the registration's failure reason and a
    sentence for the caller."""

    reason: FailureReason
    message: str


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

    def describe(self) -> str:
        """One line: the provider's code, its HTTP status and message (at most 300
        characters; providers' messages hold no secrets)."""
        code = self.reason or self.outcome
        status = f" ({self.status})" if self.status else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{code}{status}{detail}"[:300]

    @classmethod
    def success(cls, provider_message_id: str | None, *, status: int | None = 200) -> Result:
        """A delivered (or, for verify jobs, validated) message."""
        return cls(outcome="success", status=status, provider_message_id=provider_message_id)

    @classmethod
    def failure(
        cls,
        provider: str,
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


def alert(notification: Content) -> dict[str, str]:
    """The notification's title and body, those that are set."""
    fields = {"title": notification.title, "body": notification.body}
    return {key: value for key, value in fields.items() if value}


class ProviderSettings(BaseSettings):
    """A provider's own settings block, read from `PUSHLINE_*` by `load_settings()` alone
    (each provider's block sets its `env_prefix`); every field has a default."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")


class Provider(ABC):
    """A push provider: FCM, APNs, Web Push (and whatever comes next).

    The class says what the provider is (its class variables and class methods); an
    instance serves one app with that app's credentials and keeps its clients
    (connections, OAuth tokens, VAPID JWTs) for reuse; the registry caches it per app.
    """

    name: ClassVar[ProviderName]
    # How people write it, in messages: "FCM", "Web Push".
    title: ClassVar[str]
    # The shape of the decrypted credentials this provider takes (the app's slot).
    credentials_model: ClassVar[type[ProviderCredentials]]
    # Its settings block.
    settings_model: ClassVar[type[ProviderSettings]]
    # Longest token it issues, with headroom, and how a token is called in messages.
    token_limit: ClassVar[int]
    token_noun: ClassVar[str] = "the token"  # noqa: S105 - words, not a secret
    # Bytes of the encoded payload it takes at most.
    payload_limit: ClassVar[int]
    # Sends per second the provider allows one quota scope (`quota_scope`) unless the
    # operator says otherwise (services.sender.governor); None: it publishes no quota.
    default_quota: ClassVar[float | None] = None
    # Whether its 429 speaks for the whole scope, which every sender then leaves alone for
    # the answer's Retry-After; not when the provider's 429s are about one device.
    pauses_scope_on_429: ClassVar[bool] = True
    # Whether a scope comes from the device (a subscription's host) rather than from the
    # app's credentials: such scopes are the callers' input, too many to name in metrics.
    scopes_from_devices: ClassVar[bool] = False

    def __init__(  # noqa: B027
        self, credentials: ProviderCredentials, settings: ProviderSettings
    ) -> None:
        """Build the provider's clients for one app; subclasses narrow both arguments."""

    @classmethod
    def claim(cls, platform: Platform, token: str, *, web_subscription: bool) -> Claim | None:
        """How this provider claims a device of `platform` with `token`; None (the default)
        when it cannot reach it."""
        return None

    @classmethod
    def token_problem(
        cls, token: str, subscription: WebPushSubscription | None, *, allow_http: bool
    ) -> TokenProblem | None:
        """What is wrong with a printable token of the right length for this provider;
        None when nothing is (`services.core.devices.token_problem` checks the rest)."""
        return None

    @classmethod
    def document(
        cls, notification: Content, data: Mapping[str, str], options: Options
    ) -> dict[str, Any]:
        """What this provider carries for a notification, before encoding: by default
        `{"notification": {title, body, image}, "data": {...}}`, the parts that are set
        (the options a provider maps into its payload it maps here).

        Raises MessageInvalidError for data keys the provider reserves.
        """
        shown = alert(notification)
        if notification.image_url:
            shown["image"] = notification.image_url
        document: dict[str, Any] = {}
        if shown:
            document["notification"] = shown
        if data:
            document["data"] = dict(data)
        return document

    @classmethod
    def classify(
        cls,
        status: int | None,
        code: str | None = None,
        details: Sequence[Mapping[str, Any]] = (),
    ) -> ErrorClass:
        """Classify one error answer: `status` is the HTTP status (None when no answer
        arrived), `code` the provider's error code, `details` its structured details.
        By default from the status alone, a 404 or 410 meaning the token is gone. Pure;
        raises nothing."""
        return by_status(status, not_found=ErrorClass.INVALID_TOKEN)

    @classmethod
    def from_credentials(cls, credentials: Mapping[str, Any], settings: ProviderSettings) -> Self:
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

    def quota_scope(self, job: PushJob) -> str | None:
        """What shares one provider quota with `job`'s send (a project, an account, a push
        service), as the operator names it in PUSHLINE_PROVIDER_QUOTAS after `name:`; None
        (the default) when nothing is known to."""
        return None

    async def check(self) -> Result | None:
        """Ask the provider whether it takes the app's credentials, reaching no device: a
        `success` or `invalid_token` result when it judged the request past them, an
        `auth_config` failure when it refused them, any other result when it gave no
        verdict. None (the default) when the provider offers no way to check them.
        """
        return None

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most providers need it
        """Release connections and clients; the provider is unusable afterwards."""
