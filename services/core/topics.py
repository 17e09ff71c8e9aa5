"""Kafka topic names, partition keys and consumer group ids, declared once.

Every event about one device token is keyed `{app_id}:{token_hash}`, so it lands on one
partition, in order (the outcomes of one provider call travel together, keyed by their
first device); send requests are keyed by notification id.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    """A topic Pushline creates and what its messages are keyed by."""

    name: str
    key: str
    purpose: str


REGISTRATIONS = Topic(
    "push.registrations", "{app_id}:{token_hash}", "register and clean up device commands"
)
SEND_REQUESTS = Topic("push.send-requests", "{notification_id}", "notification send requests")
JOBS_FCM = Topic("push.jobs.fcm", "{app_id}:{token_hash}", "one delivery job per FCM token")
JOBS_APNS = Topic("push.jobs.apns", "{app_id}:{token_hash}", "one delivery job per APNs token")
JOBS_WEBPUSH = Topic(
    "push.jobs.webpush", "{app_id}:{token_hash}", "one delivery job per Web Push subscription"
)
FEEDBACK = Topic(
    "push.feedback",
    "{app_id}:{token_hash}",
    "device outcomes (a provider call's in one message) and notification progress",
)
WEBHOOKS = Topic("push.webhooks", "{registration_id}", "webhook callbacks to deliver")
DLQ = Topic("push.dlq", "{original key}", "messages that failed every retry")

ALL_TOPICS: tuple[Topic, ...] = (
    REGISTRATIONS,
    SEND_REQUESTS,
    JOBS_FCM,
    JOBS_APNS,
    JOBS_WEBPUSH,
    FEEDBACK,
    WEBHOOKS,
    DLQ,
)

JOB_TOPICS: dict[str, Topic] = {"fcm": JOBS_FCM, "apns": JOBS_APNS, "webpush": JOBS_WEBPUSH}

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
