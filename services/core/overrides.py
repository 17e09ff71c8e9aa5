"""The per-provider overrides of a send's options (`options.apns`, `options.fcm`,
`options.webpush`): typed models under each provider's own field names, merged last over
what the common options make; and the value types they share with the options
(localisation keys and arguments, string maps).

Overrides are part of the topic messages (`services.core.events.Options`) and, like them,
hashable: the senders key the payloads they build by a job's options.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

Priority = Literal["normal", "high"]
# How urgently iOS 15+ presents a notification (APNs `interruption-level`).
InterruptionLevel = Literal["passive", "active", "time-sensitive", "critical"]

# The validation context under which an override's unknown key is refused (the ingest's
# `parse` sets it): a misspelt provider field would otherwise be lost without a word. A
# topic's reader ignores one, as it does any field it does not know.
REFUSE_UNKNOWN: Final = "refuse_unknown"


def _as_items(value: Any) -> Any:
    return tuple(value.items()) if isinstance(value, dict) else value


def _as_tuple(value: Any) -> Any:
    # An override's JSON arrays reach its fields as lists, which strict validation refuses
    # for a tuple once a model validator has seen the input first.
    return tuple(value) if isinstance(value, list) else value


def _as_dict(items: tuple[tuple[str, str], ...]) -> dict[str, str]:
    return dict(items)


# A JSON object of strings, held as (key, value) pairs: options are hashable, since the
# senders key the payloads they build by them (`CallPayloads`).
StrMap = Annotated[
    tuple[
        tuple[
            Annotated[str, Field(min_length=1, max_length=100)],
            Annotated[str, Field(max_length=4000)],
        ],
        ...,
    ],
    BeforeValidator(_as_items),
    PlainSerializer(_as_dict),
    WithJsonSchema(
        {
            "type": "object",
            "additionalProperties": {"type": "string", "maxLength": 4000},
            "maxProperties": 100,
        }
    ),
    Field(max_length=100),
]
# Arguments of a localised string's format specifiers (`%@`, `%1$@`, `%s`).
LocArgs = Annotated[
    tuple[Annotated[str, Field(max_length=1000)], ...],
    BeforeValidator(_as_tuple),
    Field(max_length=20),
]
LocKey = Annotated[str, Field(min_length=1, max_length=200)]
Text = Annotated[str, Field(max_length=1000)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Url = Annotated[str, Field(min_length=1, max_length=2048)]


class Override(BaseModel):
    """Base of the per-provider overrides: each field is the provider's own, under its
    own name (JSON reads and writes the name the provider gives it)."""

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, dict) and info.context and info.context.get(REFUSE_UNKNOWN):
            known = {field.alias or name for name, field in cls.model_fields.items()}
            unknown = sorted(set(value) - known - set(cls.model_fields))
            if unknown:
                raise ValueError(f"not a field the provider takes here: {', '.join(unknown)}")
        return value

    def provider_json(self) -> dict[str, Any]:
        """The fields that are set, as the provider takes them."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)


ApnsPushType = Literal[
    "alert",
    "background",
    "location",
    "voip",
    "complication",
    "fileprovider",
    "mdm",
    "liveactivity",
    "pushtotalk",
    "widgets",
    "controls",
]


class ApnsHeaders(Override):
    """APNs request headers, each replacing what Pushline would send."""

    apns_priority: Literal["1", "5", "10"] | None = Field(None, alias="apns-priority")
    # A UNIX time in seconds; "0" delivers once or not at all.
    apns_expiration: Annotated[str, Field(pattern=r"^[0-9]{1,10}$")] | None = Field(
        None, alias="apns-expiration"
    )
    apns_collapse_id: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        None, alias="apns-collapse-id"
    )
    apns_push_type: ApnsPushType | None = Field(None, alias="apns-push-type")


class ApsAlert(Override):
    """`aps.alert` keys, merged over the title, body and localisation keys."""

    title: Text | None = None
    subtitle: Text | None = None
    body: Annotated[str, Field(max_length=4000)] | None = None
    launch_image: Name | None = Field(None, alias="launch-image")
    title_loc_key: LocKey | None = Field(None, alias="title-loc-key")
    title_loc_args: LocArgs | None = Field(None, alias="title-loc-args")
    subtitle_loc_key: LocKey | None = Field(None, alias="subtitle-loc-key")
    subtitle_loc_args: LocArgs | None = Field(None, alias="subtitle-loc-args")
    loc_key: LocKey | None = Field(None, alias="loc-key")
    loc_args: LocArgs | None = Field(None, alias="loc-args")


class Aps(Override):
    """`aps` keys, merged over what the common options make of it."""

    alert: ApsAlert | None = None
    badge: Annotated[int, Field(ge=0, le=99_999)] | None = None
    sound: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    thread_id: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        None, alias="thread-id"
    )
    category: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    content_available: Literal[1] | None = Field(None, alias="content-available")
    mutable_content: Literal[1] | None = Field(None, alias="mutable-content")
    target_content_id: Name | None = Field(None, alias="target-content-id")
    interruption_level: InterruptionLevel | None = Field(None, alias="interruption-level")
    relevance_score: Annotated[float, Field(ge=0, le=1)] | None = Field(
        None, alias="relevance-score"
    )
    filter_criteria: Name | None = Field(None, alias="filter-criteria")


class ApnsOverride(Override):
    """What only APNs receives: headers, `aps` keys, and keys beside `aps` (`custom`)."""

    headers: ApnsHeaders | None = None
    aps: Aps | None = None
    custom: StrMap = Field(default_factory=tuple)

    @model_validator(mode="after")
    def _aps_is_apples(self) -> ApnsOverride:
        if any(key == "aps" for key, _ in self.custom):
            raise ValueError("custom keys go beside aps: set aps keys in apns.aps")
        return self


class FcmAndroidNotification(Override):
    """FCM `android.notification` fields, merged over what the common options make."""

    title: Text | None = None
    body: Annotated[str, Field(max_length=4000)] | None = None
    icon: Name | None = None
    color: Annotated[str, Field(pattern=r"^#[0-9A-Fa-f]{6}$")] | None = None
    sound: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    tag: Name | None = None
    click_action: Name | None = None
    body_loc_key: LocKey | None = None
    body_loc_args: LocArgs | None = None
    title_loc_key: LocKey | None = None
    title_loc_args: LocArgs | None = None
    channel_id: Name | None = None
    ticker: Text | None = None
    sticky: bool | None = None
    local_only: bool | None = None
    notification_priority: (
        Literal["PRIORITY_MIN", "PRIORITY_LOW", "PRIORITY_DEFAULT", "PRIORITY_HIGH", "PRIORITY_MAX"]
        | None
    ) = None
    default_sound: bool | None = None
    visibility: Literal["PRIVATE", "PUBLIC", "SECRET"] | None = None
    notification_count: Annotated[int, Field(ge=0, le=99_999)] | None = None
    image: Url | None = None


class FcmAndroid(Override):
    """FCM `android` fields."""

    collapse_key: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    priority: Priority | None = None
    # A duration as FCM writes it: seconds with up to nine decimals and an `s`.
    ttl: Annotated[str, Field(pattern=r"^[0-9]{1,7}(\.[0-9]{1,9})?s$")] | None = None
    restricted_package_name: Name | None = None
    direct_boot_ok: bool | None = None
    # Android's data instead of the message's: FCM sends Android this alone when set.
    data: StrMap = Field(default_factory=tuple)
    notification: FcmAndroidNotification | None = None


class FcmOverride(Override):
    """What only FCM receives: `android` fields, and data keys merged over the send's."""

    android: FcmAndroid | None = None
    data: StrMap = Field(default_factory=tuple)


class WebPushHeaders(Override):
    """RFC 8030 request headers, each replacing what Pushline would send."""

    ttl: Annotated[int, Field(ge=0, le=2_419_200)] | None = Field(None, alias="TTL")
    urgency: Literal["very-low", "low", "normal", "high"] | None = Field(None, alias="Urgency")
    topic: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")] | None = Field(
        None, alias="Topic"
    )


class WebNotificationAction(Override):
    """A button of a web notification (the Notification API's `actions`)."""

    action: Name
    title: Text
    icon: Url | None = None


class WebPushNotification(Override):
    """Notification API options (`showNotification`), merged into the payload's
    `notification` for the page's service worker."""

    title: Text | None = None
    body: Annotated[str, Field(max_length=4000)] | None = None
    icon: Url | None = None
    image: Url | None = None
    badge: Url | None = None
    tag: Name | None = None
    lang: Annotated[str, Field(min_length=1, max_length=35)] | None = None
    dir: Literal["auto", "ltr", "rtl"] | None = None
    renotify: bool | None = None
    require_interaction: bool | None = Field(None, alias="requireInteraction")
    silent: bool | None = None
    vibrate: (
        Annotated[
            tuple[Annotated[int, Field(ge=0, le=10_000)], ...],
            BeforeValidator(_as_tuple),
            Field(max_length=20),
        ]
        | None
    ) = None
    timestamp: Annotated[int, Field(ge=0)] | None = None
    actions: (
        Annotated[
            tuple[WebNotificationAction, ...], BeforeValidator(_as_tuple), Field(max_length=4)
        ]
        | None
    ) = None


class WebPushOverride(Override):
    """What only Web Push receives: headers, and Notification API options."""

    headers: WebPushHeaders | None = None
    notification: WebPushNotification | None = None


def loc_args_problem(key: str | None, args: Sequence[str], which: str) -> str | None:
    """What is wrong with the `which` ("title", "body") localisation arguments: some
    without a key to format."""
    return f"{which}_loc_args need a {which}_loc_key" if args and key is None else None
