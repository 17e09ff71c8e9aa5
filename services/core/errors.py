"""Every Pushline exception, in one tree.

    PushlineError
    ├── ConfigError            a PUSHLINE_* variable is missing or malformed; fix and restart
    ├── OutboundRefusedError   a caller's URL points where Pushline must not connect
    └── UnavailableError       a dependency (Kafka, the store) did not answer; retry later
        ├── KafkaUnavailableError
        └── StoreUnavailableError

Causes are always chained (`raise ... from exc`).
"""

from __future__ import annotations


class PushlineError(Exception):
    """Base of every error Pushline raises on purpose."""


class ConfigError(PushlineError):
    """The configuration is invalid; the message names each bad variable."""


class OutboundRefusedError(PushlineError):
    """A webhook or push endpoint URL is not allowed (scheme, or a non-public address)."""


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
