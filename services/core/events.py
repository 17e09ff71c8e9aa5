"""Pydantic models of every topic message (version 1).

Messages are immutable. Within a version only additive changes are allowed, and readers
ignore fields they do not know, so an older worker can read a newer producer's message.
`schemas/*.json` is generated from these models (`make schemas`); a test fails on drift.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    Tag,
    model_validator,
)

from services.core.fields import (
    DEFAULT_LANGUAGE,
    MAX_LANGUAGES,
    MAX_TAGS,
    DeviceLanguage,
    Id,
    Language,
    Platform,
    ProviderName,
    TagKey,
    Tags,
    TagValue,
    Token,
)
from services.core.filters import Filter
from services.core.overrides import (
    ApnsOverride,
    FcmOverride,
    InterruptionLevel,
    LocArgs,
    LocKey,
    Priority,
    WebPushOverride,
    loc_args_problem,
)

SendTo = Literal["all", "latest"]
# The sender serves a transactional job before any bulk one (see services/sender/lanes.py).
PriorityLane = Literal["transactional", "bulk"]
# `cancelled`: the sender dropped the job, its notification cancelled before the call.
Outcome = Literal["success", "invalid_token", "retry", "failed", "duplicate", "cancelled"]
# The outcomes that end a device's send, which a send's callback may report one by one.
DeviceEvent = Literal["success", "invalid_token", "failed"]


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


class SendCallback(Callback):
    """Where to report a send: one POST when it reaches its final state, with its counters,
    and, for the outcomes named in `events`, POSTs of per-device events in batches."""

    events: Annotated[list[DeviceEvent], Field(max_length=3)] = Field(default_factory=list)


class Content(Message):
    """What the user sees."""

    title: Annotated[str, Field(max_length=1000)] = ""
    body: Annotated[str, Field(max_length=4000)] = ""
    image_url: Annotated[str, Field(max_length=2048)] | None = None


class AndroidOptions(Message):
    """What only Android shows (FCM `android.notification`)."""

    # The notification channel (Android 8+); the app must have created it.
    channel_id: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    # The small icon's tint, as FCM takes it.
    color: Annotated[str, Field(pattern=r"^#[0-9A-Fa-f]{6}$")] | None = None
    # A drawable resource of the app, for the small icon.
    icon: Annotated[str, Field(min_length=1, max_length=100)] | None = None


# A URL with a scheme: `https://...`, or an app's own (`shop://orders/42`).
ClickUrl = Annotated[str, Field(max_length=2048, pattern=r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")]
NotificationTag = Annotated[str, Field(min_length=1, max_length=64)]


class Options(Message):
    """How to deliver."""

    ttl: Annotated[int, Field(ge=0, le=2_419_200)] | None = None
    priority: Priority = "high"
    collapse_key: Annotated[str, Field(max_length=64)] | None = None
    send_to: SendTo | None = None
    dry_run: bool = False
    # A background push: the app wakes with the data and shows nothing (APNs
    # `content-available` at priority 5, an FCM data message).
    content_available: bool = False
    # The app icon's badge count (APNs `aps.badge`; 0 clears it).
    badge: Annotated[int, Field(ge=0, le=99_999)] | None = None
    # A sound file in the app bundle, or "default".
    sound: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    # Groups notifications on iOS (APNs `thread-id`).
    thread_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    # The actions shown with it (APNs `category`, FCM `click_action` on Android).
    category: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    # How urgently iOS 15+ presents it (APNs `interruption-level`).
    interruption_level: InterruptionLevel | None = None
    # Lets the app's notification service extension change it first (APNs
    # `mutable-content`; an image sets it anyway).
    mutable_content: bool = False
    android: AndroidOptions | None = None
    # What a tap opens: a deep link into the app (any scheme) or a web page.
    click_url: ClickUrl | None = None
    # Replaces a shown notification with the same tag (FCM Android `tag`, Web Push `tag`).
    tag: NotificationTag | None = None
    # Localised strings of the app, shown instead of the title and body where the app has
    # them (APNs and FCM Android); the title and body stay the text shown without.
    title_loc_key: LocKey | None = None
    title_loc_args: LocArgs = ()
    body_loc_key: LocKey | None = None
    body_loc_args: LocArgs = ()
    # Per-provider overrides, merged last over what the options above make.
    apns: ApnsOverride | None = None
    fcm: FcmOverride | None = None
    webpush: WebPushOverride | None = None
    # Which of the sender's lanes its jobs take; absent, the send's audience decides
    # (`SendRequest.lane`).
    priority_lane: PriorityLane | None = None

    @model_validator(mode="after")
    def _args_have_keys(self) -> Options:
        problem = loc_args_problem(self.title_loc_key, self.title_loc_args, "title")
        problem = problem or loc_args_problem(self.body_loc_key, self.body_loc_args, "body")
        if problem:
            raise ValueError(problem)
        return self

    def shown(self) -> list[str]:
        """The options that change how a shown notification looks, those that are set;
        a background push carries none of them (Apple refuses them in one)."""
        named = {
            "badge": self.badge,
            "sound": self.sound,
            "thread_id": self.thread_id,
            "category": self.category,
            "interruption_level": self.interruption_level,
            "mutable_content": self.mutable_content or None,
            "android": self.android,
            "click_url": self.click_url,
            "tag": self.tag,
            "title_loc_key": self.title_loc_key,
            "body_loc_key": self.body_loc_key,
        }
        return [name for name, value in named.items() if value is not None]


class Audience(Message):
    """Who a send request is for: any mix of selectors, or `all`.

    `platforms` narrows the association selectors (contact ids, cellphones, emails), not
    the raw tokens. Raw tokens match devices of the request's app, or of any app of the
    account with `tokens_from="account"` (Masiv's rule). `all` is every active device of
    the request's app (narrowed by `platforms`) and stands alone: every other selector
    would name a part of it. So does `filters`, the active devices of the app that match
    it (a segment, also narrowed by `platforms`).
    """

    all: bool = False
    filters: Filter | None = None
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
    # Given, they replace the device's tags; absent, a refresh keeps them.
    tags: Tags | None = None
    # Given, it replaces the device's language; absent, a refresh keeps it.
    language: DeviceLanguage | None = None


class CleanupDevices(Message):
    """push.registrations: forget a contact's devices under an app, or one of them."""

    type: Literal["cleanup"] = "cleanup"
    request_id: Id
    account_id: Id
    app_id: Id
    contact_id: Id | None = None
    token: Token | None = None
    received_at: datetime = Field(default_factory=utc_now)


class UpdateDevice(Message):
    """push.registrations, then push.feedback: change a registered device's tags and
    language, in order with its other registration events (a device that is gone stays
    gone). `tags` are set, `removed_tags` removed; tags past MAX_TAGS are refused whole."""

    type: Literal["update"] = "update"
    request_id: Id
    account_id: Id
    app_id: Id
    token: Token
    tags: Annotated[dict[TagKey, TagValue], Field(max_length=MAX_TAGS)] = Field(
        default_factory=dict
    )
    removed_tags: Annotated[list[TagKey], Field(max_length=MAX_TAGS)] = Field(default_factory=list)
    language: DeviceLanguage | None = None
    remove_language: bool = False
    received_at: datetime = Field(default_factory=utc_now)

    @model_validator(mode="after")
    def _set_or_remove(self) -> UpdateDevice:
        if self.language is not None and self.remove_language:
            raise ValueError("set the language or remove it, not both")
        if set(self.tags) & set(self.removed_tags):
            raise ValueError("a tag is set or removed, not both")
        return self


RegistrationCommand = Annotated[
    RegisterDevice | CleanupDevices | UpdateDevice, Field(discriminator="type")
]

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


# The furthest ahead a send may be scheduled, from when it was accepted.
MAX_SCHEDULE_AHEAD = timedelta(days=30)


class SendRequest(Message):
    """push.send-requests: one notification to an audience; with `send_at` in the future,
    held until then (a time in the past or now sends at once)."""

    type: Literal["send"] = "send"
    notification_id: Id
    account_id: Id
    app_id: Id | None = None
    to: Audience
    # Empty for a data-only push. With `localized`, what a device gets whose language has
    # no content of its own. Given as a map of languages with a `default` key, it is read
    # as that default and `localized`.
    notification: Content = Field(default_factory=Content)
    # Content per device language (lower-case BCP 47 tags): a device gets its language's,
    # else its primary language's ("pt" for "pt-br"), else `notification`.
    localized: Annotated[dict[Language, Content], Field(max_length=MAX_LANGUAGES)] = Field(
        default_factory=dict
    )
    data: dict[str, str] = Field(default_factory=dict)
    options: Options = Field(default_factory=Options)
    # Called back when the send ends (see services/core/callbacks.py).
    callback: SendCallback | None = None
    accepted_at: datetime = Field(default_factory=utc_now)
    # RFC 3339 with its offset: a time without one names no instant.
    send_at: AwareDatetime | None = None

    def scheduled(self, now: datetime) -> bool:
        """Whether the send is held until `send_at` (still ahead of `now`)."""
        return self.send_at is not None and self.send_at > now

    @model_validator(mode="after")
    def _within_schedule_bound(self) -> SendRequest:
        if self.send_at is not None and self.send_at - self.accepted_at > MAX_SCHEDULE_AHEAD:
            raise ValueError(f"send_at is at most {MAX_SCHEDULE_AHEAD.days} days after accepted_at")
        return self

    @model_validator(mode="before")
    @classmethod
    def _languages_map(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        notification = value.get("notification")
        # Content's own fields are strings: a map value is a language's content.
        if not isinstance(notification, dict) or not any(
            isinstance(v, dict) for v in notification.values()
        ):
            return value
        if DEFAULT_LANGUAGE not in notification:
            raise ValueError(
                f"per-language content needs a {DEFAULT_LANGUAGE!r} for other languages"
            )
        languages = dict(notification)
        default = languages.pop(DEFAULT_LANGUAGE)
        return {
            **value,
            "notification": default,
            "localized": {str(k).lower(): v for k, v in languages.items()},
        }

    @model_validator(mode="after")
    def _background_shows_nothing(self) -> SendRequest:
        shown = [bool(c.title or c.body) for c in self.contents()]
        if self.options.content_available and any(shown):
            raise ValueError(
                "options.content_available is a background push: it shows no title or body"
            )
        if self.localized and not all(shown):
            raise ValueError("per-language content needs a title or body in every language")
        if not shown[0] and self.options.shown():
            raise ValueError(f"options {self.options.shown()} need a title or body to show")
        return self

    def contents(self) -> list[Content]:
        """Every content the request may send: the default, then each language's."""
        return [self.notification, *self.localized.values()]

    def content_for(self, language: str | None) -> Content:
        """What a device of `language` gets (see `localized`)."""
        if language is None or not self.localized:
            return self.notification
        language = language.lower()
        found = self.localized.get(language) or self.localized.get(language.split("-", 1)[0])
        return found or self.notification

    @model_validator(mode="after")
    def _all_alone(self) -> SendRequest:
        if not (self.to.all or self.to.filters is not None):
            return self
        name = "to.all" if self.to.filters is None else "to.filters"
        if self.to.all and self.to.filters is not None:
            raise ValueError("to.all addresses every device of the app: it takes no to.filters")
        if self.app_id is None:
            raise ValueError(f"{name} needs the app_id whose devices it addresses")
        if self.to.tokens or self.to.contact_ids or self.to.cellphones or self.to.emails:
            raise ValueError(
                f"{name} addresses devices of the app: it takes no tokens, contact ids, "
                "cellphones or emails (to.platforms narrows it)"
            )
        if self.options.send_to == "latest":
            raise ValueError(f"{name} addresses devices, not contacts: send_to latest is refused")
        return self

    @property
    def lane(self) -> PriorityLane:
        """The lane its jobs take: `options.priority_lane`, else bulk for a fan-out to an
        app's devices (`to.all`, `to.filters`) and transactional for any other."""
        if self.options.priority_lane is not None:
            return self.options.priority_lane
        return "bulk" if self.positioned else "transactional"

    @property
    def positioned(self) -> bool:
        """Whether its audience is read in device `_id` order (`to.all`, `to.filters`), so
        that a fan-out can resume after the last device it produced."""
        return self.to.all or self.to.filters is not None


class CancelSend(Message):
    """push.send-requests: cancel the account's notification: a scheduled one never
    sends, a sending one makes no more provider calls; a done one stays done."""

    type: Literal["cancel"]
    notification_id: Id
    account_id: Id
    received_at: datetime = Field(default_factory=utc_now)


def _send_command_type(value: Any) -> str:
    """The `type` of a send command; a message without one is a send (as before `type`)."""
    found = value.get("type", "send") if isinstance(value, dict) else getattr(value, "type", "")
    return str(found)


SendCommand = Annotated[
    Annotated[SendRequest, Tag("send")] | Annotated[CancelSend, Tag("cancel")],
    Discriminator(_send_command_type),
]


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
    # The lane it travels in: its send's (`SendRequest.lane`), which names its topic.
    lane: PriorityLane = "transactional"


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
    | UpdateDevice
    | Interaction,
    Field(discriminator="type"),
]


class WebhookCall(Message):
    """push.webhooks: one signed POST to a caller's callback URL."""

    webhook_id: Id
    registration_id: Id | None = None
    notification_id: Id | None = None
    url: Annotated[str, Field(min_length=8, max_length=2048)]
    headers: dict[str, str] = Field(default_factory=dict)
    # A registration's body holds strings; a send's, its counters and device events too.
    body: dict[str, JsonValue]
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
