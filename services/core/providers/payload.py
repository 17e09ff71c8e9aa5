"""The one payload check: what each provider carries for a notification, and its size.

Each provider limits the encoded payload, not the notification's fields:
- FCM: 4096 bytes of `notification` + `data` (https://firebase.google.com/docs/cloud-messaging/concept-options#notifications_and_data_messages)
- APNs: 4096 bytes of the JSON payload (https://developer.apple.com/documentation/usernotifications/sending-notification-requests-to-apns)
- Web Push: 4096 bytes per encrypted aes128gcm record, of which 103 are header, padding
  delimiter and tag, leaving 3993 bytes of plaintext (RFC 8291 section 4, RFC 8188).

The adapters build what they send with `build_payload` (once per notification in a
provider call: `CallPayloads`), so the bytes measured here are the bytes sent; the ingest
calls `check_notification` early to refuse what no provider takes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from services.core.errors import MessageInvalidError, PayloadTooLargeError
from services.core.events import Content, PushJob
from services.core.providers.classify import ProviderName

LIMITS: Final[Mapping[ProviderName, int]] = {"fcm": 4096, "apns": 4096, "webpush": 3993}
ALL_PROVIDERS: Final[tuple[ProviderName, ...]] = ("fcm", "apns", "webpush")

# Data keys the provider keeps for itself.
# https://firebase.google.com/docs/cloud-messaging/concept-options#data_messages
_FCM_RESERVED: Final = frozenset({"from", "notification", "message_type"})
_FCM_RESERVED_PREFIXES: Final = ("google", "gcm")
_APNS_RESERVED: Final = frozenset({"aps"})
# Where the image URL goes in an APNs payload, for the app's notification service extension
# (mutable-content is set alongside it).
APNS_IMAGE_KEY: Final = "image_url"


@dataclass(frozen=True, slots=True)
class Payload:
    """What one provider carries for a notification: the document and its encoded bytes."""

    provider: ProviderName
    document: dict[str, Any]
    encoded: bytes

    @property
    def size(self) -> int:
        """Encoded size in bytes."""
        return len(self.encoded)


def _alert(notification: Content) -> dict[str, str]:
    fields = {"title": notification.title, "body": notification.body}
    return {key: value for key, value in fields.items() if value}


def _document(
    provider: ProviderName, notification: Content, data: Mapping[str, str]
) -> dict[str, Any]:
    if provider == "fcm":
        bad = [
            key
            for key in data
            if key in _FCM_RESERVED or key.lower().startswith(_FCM_RESERVED_PREFIXES)
        ]
        if bad:
            raise MessageInvalidError(
                f"data keys reserved by FCM: {sorted(bad)}",
                provider="fcm",
                reason="ReservedDataKey",
            )
        shown: dict[str, str] = _alert(notification)
        if notification.image_url:
            shown["image"] = notification.image_url
        document: dict[str, Any] = {}
        if shown:
            document["notification"] = shown
        if data:
            document["data"] = dict(data)
        return document
    if provider == "apns":
        if _APNS_RESERVED & data.keys() or (notification.image_url and APNS_IMAGE_KEY in data):
            raise MessageInvalidError(
                f"data keys reserved in the APNs payload: aps, {APNS_IMAGE_KEY} with an image",
                provider="apns",
                reason="ReservedDataKey",
            )
        aps: dict[str, Any] = {}
        alert = _alert(notification)
        if alert:
            aps["alert"] = alert
        else:
            aps["content-available"] = 1  # no alert: a background notification
        document = dict(data)
        if notification.image_url:
            aps["mutable-content"] = 1
            document[APNS_IMAGE_KEY] = notification.image_url
        document["aps"] = aps
        return document
    web: dict[str, str] = _alert(notification)
    if notification.image_url:
        web["image"] = notification.image_url
    document = {}
    if web:
        document["notification"] = web
    if data:
        document["data"] = dict(data)
    return document


def encode(provider: ProviderName, document: Mapping[str, Any]) -> bytes:
    """The bytes the provider's client puts on the wire for `document` (the APNs adapter
    sends these very bytes; the others' clients encode the same way)."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def build_payload(
    provider: ProviderName, notification: Content, data: Mapping[str, str]
) -> Payload:
    """Build and measure what `provider` carries for this notification.

    Raises PayloadTooLargeError over the provider's limit and MessageInvalidError for data
    keys the provider reserves.
    """
    document = _document(provider, notification, data)
    encoded = encode(provider, document)
    if len(encoded) > LIMITS[provider]:
        raise PayloadTooLargeError(provider=provider, size=len(encoded), limit=LIMITS[provider])
    return Payload(provider=provider, document=document, encoded=encoded)


class CallPayloads:
    """`build_payload` for the jobs of one provider call: jobs of one notification share
    everything but the token, so their payload is built, checked and encoded once."""

    def __init__(self, provider: ProviderName) -> None:
        self._provider = provider
        self._built: dict[tuple[Any, ...], Payload | MessageInvalidError] = {}

    def of(self, job: PushJob) -> Payload | MessageInvalidError:
        """The job's payload, or the error that refuses it (see `build_payload`)."""
        key = (job.notification, tuple(job.data.items()))
        built = self._built.get(key)
        if built is None:
            try:
                built = build_payload(self._provider, job.notification, job.data)
            except MessageInvalidError as exc:
                built = exc
            self._built[key] = built
        return built


def check_notification(
    notification: Content,
    data: Mapping[str, str],
    providers: Iterable[ProviderName] = ALL_PROVIDERS,
) -> None:
    """Refuse, before anything is queued, a notification one of `providers` would refuse.

    Raises PayloadTooLargeError or MessageInvalidError (the first provider that refuses).
    """
    for provider in providers:
        build_payload(provider, notification, data)
