"""A job on its way through the sender: the Kafka message it came in, what happened to it
so far, and whether it is a send (which is marked)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from services.core.events import DeliveryOutcome, PushJob
from services.core.store.deliveries import send_id

Ack = Callable[[], Awaitable[object]]


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


def is_send(sent: PushJob | DeliveryOutcome) -> bool:
    """Whether the job (or outcome) is a send of a notification, which is marked."""
    return sent.kind == "send" and sent.notification_id is not None
