"""A job on its way through the sender: what happened to it so far, the retry policy, and
the small rules about sends that the dispatcher applies."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from services.core.events import DeliveryOutcome, PushJob
from services.sender.marks import send_id

Ack = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, never sooner than the provider's Retry-After."""

    attempts: int = 5
    base: float = 1.0
    cap: float = 300.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt number `attempt + 1` (attempt 0 was the first)."""
        backoff = min(self.cap, self.base * 2.0**attempt) * (0.5 + random.random())  # noqa: S311
        return max(backoff, retry_after or 0.0)


@dataclass
class Delivery:
    """One job on its way: the Kafka message it came in, and what happened so far."""

    key: bytes | None
    job: PushJob
    ack: Ack
    # The consumer group generation the job was taken in (see `Dispatcher.revoke`).
    generation: int = 0
    history: list[str] = field(default_factory=list)
    # The send was on the wire when an earlier sender died: the device may get it twice.
    repeated: bool = False
    # The send's id (notification and device), None for a job that is no send.
    send: str | None = field(init=False)

    def __post_init__(self) -> None:
        job = self.job
        self.send = send_id(job.notification_id, job.token_hash) if is_send(job) else None


def split_copies(group: list[Delivery]) -> tuple[list[Delivery], list[Delivery]]:
    """The group without its second jobs of one send, and those second jobs."""
    firsts: dict[str, Delivery] = {}
    copies: list[Delivery] = []
    for delivery in group:
        if delivery.send is None:
            firsts[str(id(delivery))] = delivery
        elif delivery.send in firsts:
            copies.append(delivery)
        else:
            firsts[delivery.send] = delivery
    return list(firsts.values()), copies


def is_send(sent: PushJob | DeliveryOutcome) -> bool:
    """Whether the job (or outcome) is a send of a notification, which is marked."""
    return sent.kind == "send" and sent.notification_id is not None
