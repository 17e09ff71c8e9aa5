"""Kafka topic names, partition keys, message models and consumer group ids, declared once.

Every event about one device token is keyed `{app_id}:{token_hash}`, so it lands on one
partition, in order (the outcomes of one provider call travel together, keyed by their
first device); send requests are keyed by notification id. Each registered provider has
its job topic, `push.jobs.{name}` (`JOB_TOPICS`).
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
def job_topic(provider: str) -> Topic:
    """The topic of `provider`'s delivery jobs."""
    return Topic(
        f"push.jobs.{provider}", "{app_id}:{token_hash}", f"one delivery job per {provider} token"
    )


class _JobTopics(Mapping[str, Topic]):
    """The job topic of each provider this process serves (`registry.names()`)."""

    def __getitem__(self, provider: str) -> Topic:
        if provider not in registry.names():
            raise KeyError(provider)
        return job_topic(provider)

    def __iter__(self) -> Iterator[str]:
        return iter(registry.names())

    def __len__(self) -> int:
        return len(registry.names())


JOB_TOPICS: Final[Mapping[str, Topic]] = _JobTopics()


def all_topics() -> tuple[Topic, ...]:
    """Every topic Pushline creates, the job topics of every provider served among them."""
    return (REGISTRATIONS, SEND_REQUESTS, *JOB_TOPICS.values(), FEEDBACK, WEBHOOKS, DLQ)


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
