"""Kafka topic names, partition keys, message models and consumer group ids, declared once.

Every event about one device token is keyed `{app_id}:{token_hash}`, so it lands on one
partition, in order (the outcomes of one provider call travel together, keyed by their
first device); send requests are keyed by notification id. Each registered provider has
two job topics, one per priority lane: `push.jobs.{name}` for transactional jobs
(`JOB_TOPICS`) and `push.jobs.{name}.bulk` for bulk ones (`BULK_JOB_TOPICS`). Topics of
their own, not partitions of one: each lane is consumed, paused and measured (consumer lag)
apart, and a topic's partition count stays the one setting it always was.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

from pydantic import TypeAdapter

from services.core.events import (
    DeadLetter,
    FeedbackEvent,
    PriorityLane,
    PushJob,
    RegistrationCommand,
    SendCommand,
    WebhookCall,
)
from services.core.providers import registry


@dataclass(frozen=True)
class Topic:
    """A topic Pushline creates and what its messages are keyed by."""

    name: str
    key: str
    purpose: str


REGISTRATIONS = Topic(
    "push.registrations", "{app_id}:{token_hash}", "register and clean up device commands"
)
SEND_REQUESTS = Topic(
    "push.send-requests", "{notification_id}", "notification send requests and cancels"
)
FEEDBACK = Topic(
    "push.feedback",
    "{app_id}:{token_hash}",
    "device outcomes (a provider call's in one message) and notification progress",
)
WEBHOOKS = Topic("push.webhooks", "{webhook_id}", "webhook callbacks to deliver")
DLQ = Topic("push.dlq", "{original key}", "messages that failed every retry")


@cache
def job_topic(provider: str, lane: PriorityLane = "transactional") -> Topic:
    """The topic of `provider`'s delivery jobs in `lane`."""
    if lane == "bulk":
        return Topic(
            f"push.jobs.{provider}.bulk",
            "{app_id}:{token_hash}",
            f"one bulk delivery job per {provider} token",
        )
    return Topic(
        f"push.jobs.{provider}", "{app_id}:{token_hash}", f"one delivery job per {provider} token"
    )


class _JobTopics(Mapping[str, Topic]):
    """The job topic in one lane of each provider this process serves (`registry.names()`)."""

    def __init__(self, lane: PriorityLane) -> None:
        self.lane: Final[PriorityLane] = lane

    def __getitem__(self, provider: str) -> Topic:
        if provider not in registry.names():
            raise KeyError(provider)
        return job_topic(provider, self.lane)

    def __iter__(self) -> Iterator[str]:
        return iter(registry.names())

    def __len__(self) -> int:
        return len(registry.names())


JOB_TOPICS: Final[Mapping[str, Topic]] = _JobTopics("transactional")
BULK_JOB_TOPICS: Final[Mapping[str, Topic]] = _JobTopics("bulk")
LANE_TOPICS: Final[Mapping[PriorityLane, Mapping[str, Topic]]] = {
    "transactional": JOB_TOPICS,
    "bulk": BULK_JOB_TOPICS,
}


def topic_of(job: PushJob) -> Topic:
    """The job topic `job` goes on: its provider's, in its lane."""
    return LANE_TOPICS[job.lane][job.provider]


def all_topics() -> tuple[Topic, ...]:
    """Every topic Pushline creates, the job topics of every provider served among them."""
    return (
        REGISTRATIONS,
        SEND_REQUESTS,
        *JOB_TOPICS.values(),
        *BULK_JOB_TOPICS.values(),
        FEEDBACK,
        WEBHOOKS,
        DLQ,
    )


_MODELS: Final[Mapping[str, TypeAdapter[Any]]] = {
    REGISTRATIONS.name: TypeAdapter(RegistrationCommand),
    SEND_REQUESTS.name: TypeAdapter(SendCommand),
    FEEDBACK.name: TypeAdapter(FeedbackEvent),
    WEBHOOKS.name: TypeAdapter(WebhookCall),
    DLQ.name: TypeAdapter(DeadLetter),
}
_JOB_MODEL: Final[TypeAdapter[PushJob]] = TypeAdapter(PushJob)


def model_of(topic: Topic) -> TypeAdapter[Any]:
    """The model of `topic`'s messages: the JSON Schema export and the (de)serialisers
    use it."""
    return _MODELS.get(topic.name) or _JOB_MODEL


# Faust app ids: each is also the consumer group of that service's agents.
RESOLVER_APP_ID = "pushline-resolver"
SENDER_APP_ID = "pushline-sender"
FEEDBACK_APP_ID = "pushline-feedback"


def device_key(app_id: str, token_hash: str) -> bytes:
    """Partition key of every event about one device token."""
    return f"{app_id}:{token_hash}".encode()


def notification_key(notification_id: str) -> bytes:
    """Partition key of a send request."""
    return notification_id.encode()
