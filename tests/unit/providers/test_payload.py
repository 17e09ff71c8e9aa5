"""The one encoded-size check, at each provider's limit."""

from __future__ import annotations

import json

import pytest

from services.core.errors import MessageInvalidError, PayloadTooLargeError
from services.core.events import Content, Options
from services.core.providers.payload import (
    ELLIPSIS,
    Payload,
    build_payload,
    check_notification,
    fitted,
)
from services.core.providers.registry import provider_class


def build(
    provider: str, content: Content, data: dict[str, str], options: Options | None = None
) -> Payload:
    return build_payload(provider_class(provider), content, data, options or Options())


def fill(provider: str, size: int) -> tuple[Content, dict[str, str]]:
    """A notification whose encoded payload for `provider` is exactly `size` bytes."""
    content = Content(title="t", body="")
    base = build(provider, content, {"k": ""}).size
    return content, {"k": "x" * (size - base)}


@pytest.mark.parametrize(("provider", "limit"), [("fcm", 4096), ("apns", 4096), ("webpush", 3993)])
def test_limits_are_the_providers(provider: str, limit: int) -> None:
    assert provider_class(provider).payload_limit == limit


@pytest.mark.parametrize("provider", ["fcm", "apns", "webpush"])
def test_exactly_at_the_limit_passes_one_byte_over_fails(provider: str) -> None:
    limit = provider_class(provider).payload_limit
    content, data = fill(provider, limit)
    assert build(provider, content, data).size == limit
    content, data = fill(provider, limit + 1)
    with pytest.raises(PayloadTooLargeError) as caught:
        build(provider, content, data)
    assert (caught.value.size, caught.value.limit, caught.value.provider) == (
        limit + 1,
        limit,
        provider,
    )
    assert caught.value.reason == "PayloadTooLarge"


def test_size_counts_utf8_bytes_not_characters() -> None:
    # 2000 two-byte characters: 2000 characters but over 3993 bytes for Web Push.
    content = Content(title="", body="é" * 2000)
    with pytest.raises(PayloadTooLargeError):
        build("webpush", content, {})
    assert build("fcm", content, {}).size == len(
        json.dumps(
            {"notification": {"body": "é" * 2000}}, ensure_ascii=False, separators=(",", ":")
        ).encode()
    )


def test_documents_are_what_each_provider_carries() -> None:
    content = Content(title="Hi", body="There", image_url="https://img.example/a.png")
    data = {"order": "42"}
    assert build("fcm", content, data).document == {
        "notification": {"title": "Hi", "body": "There", "image": "https://img.example/a.png"},
        "data": {"order": "42"},
    }
    assert build("apns", content, data).document == {
        "order": "42",
        "image_url": "https://img.example/a.png",
        "aps": {"alert": {"title": "Hi", "body": "There"}, "mutable-content": 1},
    }
    assert build("webpush", content, data).document == {
        "notification": {"title": "Hi", "body": "There", "image": "https://img.example/a.png"},
        "data": {"order": "42"},
    }


def test_apns_without_alert_is_a_background_push() -> None:
    assert build("apns", Content(), {"sync": "1"}).document == {
        "sync": "1",
        "aps": {"content-available": 1},
    }


def test_apns_payload_is_compact_utf8_json() -> None:
    payload = build("apns", Content(title="Ü"), {})
    assert payload.encoded == '{"aps":{"alert":{"title":"Ü"}}}'.encode()


@pytest.mark.parametrize(
    ("provider", "data"),
    [
        ("fcm", {"from": "x"}),
        ("fcm", {"google.sent_time": "x"}),
        ("fcm", {"gcm.notification": "x"}),
        ("fcm", {"message_type": "x"}),
        ("apns", {"aps": "x"}),
    ],
)
def test_reserved_data_keys_are_message_invalid(provider: str, data: dict[str, str]) -> None:
    with pytest.raises(MessageInvalidError) as caught:
        build(provider, Content(title="t"), data)
    assert caught.value.reason == "ReservedDataKey"
    assert not isinstance(caught.value, PayloadTooLargeError)


def test_ingest_check_refuses_what_any_provider_would() -> None:
    content, data = fill("webpush", 4000)  # fits FCM and APNs, not Web Push
    check_notification(content, data, Options(), providers=["fcm", "apns"])
    with pytest.raises(PayloadTooLargeError) as caught:
        check_notification(content, data, Options())
    assert caught.value.provider == "webpush"


def test_apns_options_count_toward_its_limit() -> None:
    content, data = fill("apns", 4096)
    assert build("apns", content, data).size == 4096
    with pytest.raises(PayloadTooLargeError):
        build("apns", content, data, Options(sound="default"))


@pytest.mark.parametrize("text", ["x", "\u00e9", '"', "\u2603"])
def test_fitted_shortens_the_body_to_the_smallest_limit(text: str) -> None:
    data = {"k": "y" * 3000}
    content = Content(title="t", body=text * 2000)
    shortened = fitted(content, data, Options(), ["fcm", "apns", "webpush"])
    assert shortened.body.endswith(ELLIPSIS)
    assert text * 100 in shortened.body
    check_notification(shortened, data, Options())
    assert build("webpush", shortened, data).size > 3993 - 8  # no more than needed


def test_fitted_leaves_what_fits_or_cannot_fit() -> None:
    fits = Content(title="t", body="short")
    assert fitted(fits, {}, Options(), ["apns"]) == fits
    # Data alone over the limit: no body would be short enough.
    hopeless = Content(title="t", body="b" * 100)
    assert fitted(hopeless, {"k": "y" * 5000}, Options(), ["apns"]) == hopeless
    reserved = Content(title="t", body="b" * 4000)
    assert fitted(reserved, {"aps": "x"}, Options(), ["apns"]) == reserved
