"""The one payload check: what a provider carries for a notification, and its size.

Each provider limits the encoded payload, not the notification's fields, and says what it
carries (`Provider.document`) and how much it takes (`Provider.payload_limit`).

The adapters build what they send with `build_payload` (once per notification in a
provider call: `CallPayloads`), so the bytes measured here are the bytes sent; the ingest
calls `check_notification` early to refuse what no provider takes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.core.errors import MessageInvalidError, PayloadTooLargeError
from services.core.events import Content, Options, PushJob
from services.core.providers import registry
from services.core.providers.base import Provider

# What ends a body shortened to fit.
ELLIPSIS = "\u2026"


@dataclass(frozen=True, slots=True)
class Payload:
    """What one provider carries for a notification: the document and its encoded bytes."""

    provider: str
    document: dict[str, Any]
    encoded: bytes

    @property
    def size(self) -> int:
        """Encoded size in bytes."""
        return len(self.encoded)


def encode(document: Mapping[str, Any] | str) -> bytes:
    """The bytes a provider's client puts on the wire for `document`, or for a string in
    it (the APNs adapter sends these very bytes; the others' clients encode the same way)."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def build_payload(
    provider: type[Provider], notification: Content, data: Mapping[str, str], options: Options
) -> Payload:
    """Build and measure what `provider` carries for this notification.

    Raises PayloadTooLargeError over the provider's limit and MessageInvalidError for data
    keys the provider reserves.
    """
    document = provider.document(notification, data, options)
    encoded = encode(document)
    if len(encoded) > provider.payload_limit:
        raise PayloadTooLargeError(
            provider=provider.name, size=len(encoded), limit=provider.payload_limit
        )
    return Payload(provider=provider.name, document=document, encoded=encoded)


class CallPayloads:
    """`build_payload` for the jobs of one provider call: jobs of one notification share
    everything but the token, so their payload is built, checked and encoded once."""

    def __init__(self, provider: type[Provider]) -> None:
        self._provider = provider
        self._built: dict[tuple[Any, ...], Payload | MessageInvalidError] = {}

    def of(self, job: PushJob) -> Payload | MessageInvalidError:
        """The job's payload, or the error that refuses it (see `build_payload`)."""
        key = (job.notification, job.options, tuple(job.data.items()))
        built = self._built.get(key)
        if built is None:
            try:
                built = build_payload(self._provider, job.notification, job.data, job.options)
            except MessageInvalidError as exc:
                built = exc
            self._built[key] = built
        return built


def check_notification(
    notification: Content,
    data: Mapping[str, str],
    options: Options,
    providers: Iterable[str] | None = None,
) -> None:
    """Refuse, before anything is queued, a notification one of `providers` (by name;
    every registered one when None) would refuse.

    Raises PayloadTooLargeError or MessageInvalidError (the first provider that refuses).
    """
    for name in registry.names() if providers is None else providers:
        build_payload(registry.provider_class(name), notification, data, options)


def fitted(
    notification: Content, data: Mapping[str, str], options: Options, providers: Iterable[str]
) -> Content:
    """The notification with its body shortened (ending in an ellipsis) as far as every one
    of `providers` (by name) needs. Unchanged when it fits, and when shortening the body
    cannot make it fit (`check_notification` then refuses it with its size). Raises
    nothing."""
    for name in providers:
        try:
            build_payload(registry.provider_class(name), notification, data, options)
        except PayloadTooLargeError as exc:
            body = _shortened(notification.body, exc.size - exc.limit)
            if body is None:
                return notification
            notification = notification.model_copy(update={"body": body})
        except MessageInvalidError:
            return notification
    return notification


def _shortened(body: str, excess: int) -> str | None:
    """`body` less at least `excess` bytes of its JSON, with an ellipsis; None when nothing
    of it would be left (a notification that loses its whole body may show nothing)."""
    # Measured as the JSON carries each character: escapes take more than their UTF-8.
    costs = [len(encode(char)) - 2 for char in body]
    budget = sum(costs) - excess - len(encode(ELLIPSIS)) + 2
    end = 0
    for cost in costs:
        if budget < cost:
            break
        budget -= cost
        end += 1
    kept = body[:end].rstrip()
    return kept + ELLIPSIS if kept else None
