"""Pydantic models of every topic message (version 1).

Messages are immutable. Within a version only additive changes are allowed, and readers
ignore fields they do not know, so an older worker can read a newer producer's message.
`schemas/*.json` is generated from these models (`make schemas`); a test fails on drift.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Platform = Literal["android", "ios", "web"]
# A registered provider's name: `fcm`, `apns`, `webpush` (services/core/providers/registry.py
# lists them); it names the job topic `push.jobs.{name}`.
ProviderName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9]{1,19}$")]
Priority = Literal["normal", "high"]
SendTo = Literal["all", "latest"]
Outcome = Literal["success", "invalid_token", "retry", "failed", "duplicate"]

Id = Annotated[str, Field(min_length=1, max_length=200)]
# FCM tokens run to ~200 characters, Web Push endpoints to a few hundred; 4 KiB bounds both.
Token = Annotated[str, Field(min_length=1, max_length=4096)]


def utc_now() -> datetime:
    """The current time, timezone-aware (every event time is UTC)."""
    return datetime.now(UTC)


class Message(BaseModel):
    """Base of every topic message: frozen, forward compatible, versioned."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: Literal[1] = 1


class WebPushKeys(Message):
    """The keys of a W3C push subscription (base64url)."""

    p256dh: Annotated[str, Field(min_length=1, max_length=200)]
    auth: Annotated[str, Field(min_length=1, max_length=100)]


class WebPushSubscription(Message):
    """A W3C push subscription: where to send, and the keys to encrypt for."""

    endpoint: Annotated[str, Field(min_length=8, max_length=2048)]
    keys: WebPushKeys


class Callback(Message):
    """A webhook target given with a request (seed 001's x-ms-callback-url).

    `signature` is computed by the ingest, the only place that sees the caller's API token
    in clear (seed 001: base64 HMAC-SHA256 of the URL keyed by the token).
    """

    url: Annotated[str, Field(min_length=8, max_length=2048)]
    headers: dict[str, str] = Field(default_factory=dict)
    # Seed 001's `Signature`: base64 HMAC-SHA256 of `url` keyed by the caller's API token.
    # Computed where the token is seen, at the ingest, since the store keeps only key hashes.
    signature: Annotated[str, Field(max_length=100)] | None = None


class Content(Message):
    """What the user sees."""

    title: Annotated[str, Field(max_length=1000)] = ""
    body: Annotated[str, Field(max_length=4000)] = ""
    image_url: Annotated[str, Field(max_length=2048)] | None = None


class Options(Message):
    """How to deliver."""

    ttl: Annotated[int, Field(ge=0, le=2_419_200)] | None = None
    priority: Priority = "high"
    collapse_key: Annotated[str, Field(max_length=64)] | None = None
    send_to: SendTo | None = None
    dry_run: bool = False


class Audience(Message):
    """Who a send request is for: any mix of selectors, or `all`.

    `platforms` narrows the association selectors (contact ids, cellphones, emails), not
    the raw tokens. Raw tokens match devices of the request's app, or of any app of the
    account with `tokens_from="account"` (Masiv's rule). `all` is every active device of
    the request's app (narrowed by `platforms`) and stands alone: every other selector
    would name a part of it.
    """

    all: bool = False
    tokens: list[Token] = Field(default_factory=list)
    contact_ids: list[Id] = Field(default_factory=list)
    cellphones: list[Id] = Field(default_factory=list)
    emails: list[Id] = Field(default_factory=list)
    platforms: list[Platform] = Field(default_factory=list)
    tokens_from: Literal["app", "account"] = "app"


class RegisterDevice(Message):
    """push.registrations: map a device token to a contact under an app."""

    type: Literal["register"] = "register"
    request_id: Id
    account_id: Id
    app_id: Id
    platform: Platform
    token: Token
    subscription: WebPushSubscription | None = None
    contact_id: Id | None = None
    cellphone: Id | None = None
    email: Id | None = None
    verify: bool = False
    track: bool = False
    callback: Callback | None = None
    source: Literal["native", "routee", "cij", "masiv", "kafka"] = "kafka"
    received_at: datetime = Field(default_factory=utc_now)


class CleanupDevices(Message):
    """push.registrations: forget a contact's devices under an app, or one of them."""

    type: Literal["cleanup"] = "cleanup"
    request_id: Id
    account_id: Id
    app_id: Id
    contact_id: Id | None = None
    token: Token | None = None
    received_at: datetime = Field(default_factory=utc_now)


RegistrationCommand = Annotated[RegisterDevice | CleanupDevices, Field(discriminator="type")]

RegistrationStatus = Literal["Pending", "Success", "Failed"]
FailureReason = Literal[
    "DuplicateExists",
    "DryRunSendingFailed",
    "DeviceTokenTooLong",
    "FailedToStoreDevice",
    "ApiTokenNotValid",
]


class RegistrationResolved(Message):
    """push.feedback: the resolver's verdict on a registration, for feedback to apply.

    `Success` means store the device; `Failed` stores only the status (and calls back).
    """

    type: Literal["registration"] = "registration"
    command: RegisterDevice
    provider: ProviderName
    token_hash: Id
    status: Literal["Success", "Failed"]
    failure_reason: FailureReason | None = None


class SendRequest(Message):
    """push.send-requests: one notification to an audience."""

    notification_id: Id
    account_id: Id
    app_id: Id | None = None
    to: Audience
    notification: Content
    data: dict[str, str] = Field(default_factory=dict)
    options: Options = Field(default_factory=Options)
    accepted_at: datetime = Field(default_factory=utc_now)

    @model_validator(mode="after")
    def _all_alone(self) -> SendRequest:
        if not self.to.all:
            return self
        if self.app_id is None:
            raise ValueError("to.all needs the app_id whose devices it addresses")
        if self.to.tokens or self.to.contact_ids or self.to.cellphones or self.to.emails:
            raise ValueError(
                "to.all addresses every device of the app: it takes no tokens, contact ids, "
                "cellphones or emails (to.platforms narrows it)"
            )
        if self.options.send_to == "latest":
            raise ValueError("to.all addresses devices, not contacts: send_to latest is refused")
        return self


class PushJob(Message):
    """push.jobs.{provider}: deliver one notification to one device token.

    `kind="verify"` is a registration's dry-run check: validate-only where the provider
    offers it, carrying the registration it decides so feedback can apply it.
    """

    kind: Literal["send", "verify"] = "send"
    notification_id: Id | None = None
    registration: RegisterDevice | None = None
    account_id: Id
    app_id: Id
    provider: ProviderName
    platform: Platform
    token: Token
    token_hash: Id
    subscription: WebPushSubscription | None = None
    notification: Content = Field(default_factory=Content)
    data: dict[str, str] = Field(default_factory=dict)
    options: Options = Field(default_factory=Options)
    accepted_at: datetime = Field(default_factory=utc_now)
    attempt: Annotated[int, Field(ge=0)] = 0


class DeliveryOutcome(Message):
    """push.feedback: what a provider answered for one job."""

    type: Literal["delivery"] = "delivery"
    kind: Literal["send", "verify"] = "send"
    notification_id: Id | None = None
    registration: RegisterDevice | None = None
    app_id: Id
    provider: ProviderName
    token_hash: Id
    outcome: Outcome
    reason: Annotated[str, Field(max_length=500)] | None = None
    provider_message_id: Annotated[str, Field(max_length=500)] | None = None
    platform: Platform | None = None
    # When the provider says the token stopped being valid (APNs 410 `timestamp`); a device
    # registered after that moment stays active.
    invalid_since: datetime | None = None
    # The send was made again after an earlier try that may have reached the device: its
    # sender died with it on the wire, or its request went unanswered (a timeout). The
    # device may have it twice (feedback counts it as a `duplicate`).
    repeated: bool = False
    accepted_at: datetime
    answered_at: datetime = Field(default_factory=utc_now)


class DeliveryOutcomes(Message):
    """push.feedback: the outcomes of the sends of one provider call, or the kept outcomes
    the sender publishes again for jobs that came back, in one message.

    Sends that did not find their device gone: a verification's outcome, and a send's
    `invalid_token`, travel alone as a `DeliveryOutcome` keyed by the device, so that they
    stay in order with the device's registration events (feedback then changes the device
    by `_id` alone: the local store scans the collection for any other condition).
    """

    type: Literal["deliveries"] = "deliveries"
    outcomes: Annotated[list[DeliveryOutcome], Field(min_length=1, max_length=500)]

    @model_validator(mode="after")
    def _keep_no_device_changes(self) -> DeliveryOutcomes:
        if any(o.kind != "send" or o.outcome == "invalid_token" for o in self.outcomes):
            raise ValueError(
                "a verification's outcome and an invalid_token travel alone, not in a batch"
            )
        return self


class FanoutCompleted(Message):
    """push.feedback: the resolver produced every job of a notification."""

    type: Literal["fanout"] = "fanout"
    notification_id: Id
    jobs: Annotated[int, Field(ge=0)]
    by_platform: dict[Platform, int] = Field(default_factory=dict)
    by_provider: dict[ProviderName, int] = Field(default_factory=dict)
    # A dry run counts the audience (`jobs` is what a real run would produce) and
    # produces no job.
    dry_run: bool = False


InteractionType = Literal["delivered", "opened", "clicked", "dismissed"]


class Interaction(Message):
    """push.feedback: an app reports what its user did with a notification."""

    type: Literal["interaction"] = "interaction"
    notification_id: Id
    app_id: Id
    token_hash: Id
    interaction: InteractionType
    at: datetime = Field(default_factory=utc_now)


FeedbackEvent = Annotated[
    DeliveryOutcome
    | DeliveryOutcomes
    | FanoutCompleted
    | RegistrationResolved
    | CleanupDevices
    | Interaction,
    Field(discriminator="type"),
]


class WebhookCall(Message):
    """push.webhooks: one signed POST to a caller's callback URL."""

    webhook_id: Id
    registration_id: Id | None = None
    url: Annotated[str, Field(min_length=8, max_length=2048)]
    headers: dict[str, str] = Field(default_factory=dict)
    body: dict[str, str | None]
    attempt: Annotated[int, Field(ge=0)] = 0
    created_at: datetime = Field(default_factory=utc_now)


class DeadLetter(Message):
    """push.dlq: a message that could not be processed, with why."""

    topic: str
    key: str | None = None
    value: str
    error: Annotated[str, Field(max_length=2000)]
    attempts: Annotated[int, Field(ge=0)] = 0
    failed_at: datetime = Field(default_factory=utc_now)
    app_id: Id | None = None
    # The provider's last code (`UNAVAILABLE`, `InvalidProviderToken`, ...), for filtering.
    reason: Annotated[str, Field(max_length=200)] | None = None
    # Whether putting `value` back on `topic` may succeed once the cause is fixed.
    replayable: bool = False
