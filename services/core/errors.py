"""Every Pushline exception, in one tree.

    PushlineError
    ├── ConfigError            a PUSHLINE_* variable is missing or malformed; fix and restart
    │   └── MasterKeyMissingError   credentials asked to be stored or read without a master key
    ├── UnavailableError       a dependency (Kafka, the store) did not answer; retry later
    │   ├── KafkaUnavailableError
    │   └── StoreUnavailableError
    ├── SecretUnreadableError  a stored secret does not decrypt: wrong master key or tampered
    └── RegistryError          an account or app operation that cannot be done as asked
        ├── NotFoundError
        ├── AlreadyExistsError
        └── InvalidRequestError    the request contradicts the registry (e.g. a package name
                                   already used by another app of the account)

Causes are always chained (`raise ... from exc`).
"""

from __future__ import annotations


class PushlineError(Exception):
    """Base of every error Pushline raises on purpose."""


class ConfigError(PushlineError):
    """The configuration is invalid; the message names each bad variable."""


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


class MasterKeyMissingError(ConfigError):
    """PUSHLINE_MASTER_KEY is not set, so provider credentials can be neither stored nor read."""


class SecretUnreadableError(PushlineError):
    """A stored secret did not decrypt: another master key encrypted it, or it was altered."""


class RegistryError(PushlineError):
    """An account or app operation that cannot be done as asked; the message says why."""


class NotFoundError(RegistryError):
    """The account or app does not exist."""


class AlreadyExistsError(RegistryError):
    """An account or app with that id already exists."""


class InvalidRequestError(RegistryError):
    """The request is well formed but contradicts what the registry holds."""
