"""What an emulator remembers: token marks, an injected fault, added latency, the record.

One `Controls` per emulator. Tests call it from their own thread while the emulator serves
from another, so every method takes the lock.
"""

from __future__ import annotations

import base64
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

RECORD_LIMIT = 10_000
FAULT_STATUSES = frozenset({429, 500, 503})


class TokenState(StrEnum):
    """What the emulator answers for a device token (a subscription id for Web Push)."""

    ACTIVE = "active"
    UNREGISTERED = "unregistered"
    INVALID = "invalid"


@dataclass(frozen=True)
class Record:
    """One request to a provider's send endpoint and the emulator's answer.

    `payload` is the decoded JSON body (FCM, APNs) or, for Web Push, the decrypted plaintext
    decoded as JSON when it is JSON; `plaintext` holds the decrypted Web Push bytes.
    """

    provider: str
    target: str
    status: int
    reason: str | None
    headers: dict[str, str]
    payload: Any
    received_at: float
    plaintext: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        """The record as the control API returns it (plaintext in base64)."""
        return {
            "provider": self.provider,
            "target": self.target,
            "status": self.status,
            "reason": self.reason,
            "headers": self.headers,
            "payload": self.payload,
            "received_at": self.received_at,
            "plaintext": None
            if self.plaintext is None
            else base64.b64encode(self.plaintext).decode(),
        }


@dataclass
class Fault:
    """Fail `share` of the requests with `status`, at most `count` times when set.

    The share is applied deterministically (every second request for 0.5), so retry tests
    and benchmarks get the same sequence each run.
    """

    status: int
    share: float = 1.0
    count: int | None = None
    retry_after: int | None = None
    _credit: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        if self.status not in FAULT_STATUSES:
            raise ValueError(f"fault status must be one of {sorted(FAULT_STATUSES)}")
        if not 0 < self.share <= 1:
            raise ValueError("share must be in (0, 1]")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be at least 1")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must not be negative")

    def draw(self) -> bool:
        """Whether this request fails; consumes one of `count`."""
        self._credit += self.share
        if self._credit < 1 - 1e-9:
            return False
        self._credit -= 1
        if self.count is not None:
            self.count -= 1
        return True

    @property
    def spent(self) -> bool:
        """No failures left to inject."""
        return self.count == 0


class Controls:
    """The Python control API of one emulator; the HTTP control API calls the same methods."""

    def __init__(self, record_limit: int = RECORD_LIMIT) -> None:
        self._lock = threading.Lock()
        self._marks: dict[str, tuple[TokenState, int]] = {}
        self._fault: Fault | None = None
        self._latency = 0.0
        self._records: deque[Record] = deque(maxlen=record_limit)

    def mark(self, tokens: Iterable[str], state: TokenState, *, at_ms: int | None = None) -> None:
        """Answer for these tokens as `state` from now on.

        `at_ms` is when the token stopped being valid (APNs reports it with `Unregistered`);
        it defaults to now.
        """
        since = at_ms if at_ms is not None else int(time.time() * 1000)
        with self._lock:
            for token in tokens:
                if state is TokenState.ACTIVE:
                    self._marks.pop(token, None)
                else:
                    self._marks[token] = (state, since)

    def token_state(self, token: str) -> tuple[TokenState, int]:
        """The token's state and since when (ms); unmarked tokens are active."""
        with self._lock:
            return self._marks.get(token, (TokenState.ACTIVE, 0))

    def fail(
        self,
        status: int,
        *,
        share: float = 1.0,
        count: int | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Fail a share of the send requests with 429, 500 or 503; replaces any earlier fault.

        Raises ValueError for a status or share out of range.
        """
        fault = Fault(status, share, count, retry_after)
        with self._lock:
            self._fault = fault

    def heal(self) -> None:
        """Stop injecting failures."""
        with self._lock:
            self._fault = None

    def draw_fault(self) -> Fault | None:
        """The fault to answer this request with, if it is one of the failing share."""
        with self._lock:
            fault = self._fault
            if fault is None or not fault.draw():
                return None
            if fault.spent:
                self._fault = None
            return fault

    def slow_down(self, seconds: float) -> None:
        """Wait this long before answering each send request (0 to stop)."""
        if seconds < 0:
            raise ValueError("latency must not be negative")
        with self._lock:
            self._latency = seconds

    @property
    def latency(self) -> float:
        """Seconds added before each send answer."""
        with self._lock:
            return self._latency

    def add(self, record: Record) -> None:
        """Keep a record; the oldest go once the limit is reached."""
        with self._lock:
            self._records.append(record)

    def records(self) -> list[Record]:
        """What the emulator received, oldest first."""
        with self._lock:
            return list(self._records)

    def clear_records(self) -> int:
        """Forget the record; return how many entries it had."""
        with self._lock:
            count = len(self._records)
            self._records.clear()
            return count

    def reset(self) -> None:
        """Back to the start: no marks, no fault, no latency, an empty record."""
        with self._lock:
            self._marks.clear()
            self._fault = None
            self._latency = 0.0
            self._records.clear()
