"""Every Pushline exception, in one tree.

    PushlineError
    ├── ConfigError                a PUSHLINE_* variable is missing or malformed; fix and restart
    │   └── MasterKeyMissingError  credentials asked to be stored or read without a master key
    ├── OutboundRefusedError       a caller's URL points where Pushline must not connect
    ├── DependencyError            an installed library is not the one Pushline was built
    │                              against (a private seam moved); pin it and redeploy
    ├── SecretUnreadableError      a stored secret does not decrypt: wrong master key or tampered
    ├── IdempotencyConflictError   an Idempotency-Key already names a request with another body
    ├── RegistryError              an account or app operation that cannot be done as asked
    │   ├── NotFoundError
    │   ├── AlreadyExistsError
    │   └── InvalidRequestError    the request contradicts the registry (e.g. a package name
    │                              already used by another app of the account)
    ├── UnavailableError           a dependency did not answer; retry after `retry_after`
    │   ├── KafkaUnavailableError
    │   ├── StoreUnavailableError
    │   └── ProviderUnavailableError   FCM/APNs/Web Push 5xx, timeout or connection error
    │       └── ProviderQuotaError     the provider throttled us (429, QUOTA_EXCEEDED)
    └── ProviderRejectedError      the provider refused the request; the same request will
        │                          fail again, so it is not retried
        ├── ProviderAuthError      the app's credentials were refused (auth_config): fix them,
        │                          then replay; never a reason to invalidate a device
        └── MessageInvalidError    the message itself is wrong (message_invalid)
            └── PayloadTooLargeError   the encoded payload exceeds the provider's limit

A rejected device token is not an exception: it is the `invalid_token` outcome of a send
(see `services.core.providers.base.Result`). Provider adapters return these errors as values
on each job's result; callers that prefer exceptions raise them.

Causes are always chained (`raise ... from exc`).
"""

from __future__ import annotations


class PushlineError(Exception):
    """Base of every error Pushline raises on purpose."""


class ConfigError(PushlineError):
    """The configuration is invalid; the message names each bad variable."""


class OutboundRefusedError(PushlineError):
    """A webhook or push endpoint URL is not allowed (scheme, or a non-public address)."""


class DependencyError(PushlineError):
    """An installed library no longer has what Pushline relies on; the message says what."""


class UnavailableError(PushlineError):
    """A dependency did not answer in time; the operation may be retried.

    `retry_after` is the suggested wait in seconds.
    """

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class KafkaUnavailableError(UnavailableError):
    """The Kafka cluster did not answer."""


class StoreUnavailableError(UnavailableError):
    """The MongoDB store did not answer."""


class ProviderUnavailableError(UnavailableError):
    """A push provider failed temporarily (5xx, timeout, connection error).

    `provider` is `fcm`, `apns` or `webpush`; `reason` the provider's error code (or the
    transport error's name); `status` the HTTP status when there was one.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        reason: str,
        status: int | None = None,
        retry_after: float = 1.0,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.provider = provider
        self.reason = reason
        self.status = status


class ProviderQuotaError(ProviderUnavailableError):
    """The provider throttled the sender; wait at least `retry_after` seconds."""


class ProviderRejectedError(PushlineError):
    """A push provider refused the request for a reason that retrying will not fix."""

    def __init__(
        self, message: str, *, provider: str, reason: str, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.reason = reason
        self.status = status


class ProviderAuthError(ProviderRejectedError):
    """The provider refused the app's credentials (or they could not be used)."""


class MessageInvalidError(ProviderRejectedError):
    """The provider (or Pushline on its behalf) refused the message's content."""


class PayloadTooLargeError(MessageInvalidError):
    """The encoded payload is `size` bytes, over the provider's `limit`."""

    def __init__(self, *, provider: str, size: int, limit: int) -> None:
        super().__init__(
            f"{provider} payload is {size} bytes encoded, over the {limit}-byte limit",
            provider=provider,
            reason="PayloadTooLarge",
            status=None,
        )
        self.size = size
        self.limit = limit


class MasterKeyMissingError(ConfigError):
    """PUSHLINE_MASTER_KEY is not set, so provider credentials can be neither stored nor read."""


class SecretUnreadableError(PushlineError):
    """A stored secret did not decrypt: another master key encrypted it, or it was altered."""


class IdempotencyConflictError(PushlineError):
    """The Idempotency-Key was used, within its window, for a request with another body.

    `notification_id` is the id of the request the key already names.
    """

    def __init__(self, message: str, *, notification_id: str) -> None:
        super().__init__(message)
        self.notification_id = notification_id


class RegistryError(PushlineError):
    """An account or app operation that cannot be done as asked; the message says why."""


class NotFoundError(RegistryError):
    """The account or app does not exist."""


class AlreadyExistsError(RegistryError):
    """An account or app with that id already exists."""


class InvalidRequestError(RegistryError):
    """The request is well formed but contradicts what the registry holds."""
