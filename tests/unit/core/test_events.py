from __future__ import annotations

from datetime import UTC, datetime

import pydantic
import pytest

from services.core import topics
from services.core.events import (
    MAX_SCHEDULE_AHEAD,
    CancelSend,
    CleanupDevices,
    Content,
    DeliveryOutcome,
    DeliveryOutcomes,
    FanoutCompleted,
    Options,
    PushJob,
    RegisterDevice,
    SendRequest,
)
from services.core.kafka import decode, encode
from services.core.overrides import REFUSE_UNKNOWN, ApnsHeaders, ApnsOverride
from services.core.tokens import hash_token


def test_registration_commands_round_trip_by_type() -> None:
    register = RegisterDevice(
        request_id="r1", account_id="acc", app_id="app", platform="android", token="tok"
    )
    cleanup = CleanupDevices(request_id="r2", account_id="acc", app_id="app", contact_id="c")
    assert decode(topics.REGISTRATIONS, encode(register)) == register
    assert decode(topics.REGISTRATIONS, encode(cleanup)) == cleanup


def test_feedback_events_round_trip_by_type() -> None:
    job = PushJob(
        account_id="acc",
        app_id="app",
        provider="fcm",
        platform="android",
        token="tok",
        token_hash=hash_token("tok"),
        notification=Content(title="hi"),
    )
    outcome = DeliveryOutcome(
        app_id="app",
        provider="fcm",
        token_hash=job.token_hash,
        outcome="invalid_token",
        reason="UNREGISTERED",
        accepted_at=job.accepted_at,
    )
    fanout = FanoutCompleted(notification_id="n1", jobs=3, by_platform={"android": 3})
    sent = outcome.model_copy(update={"outcome": "success", "reason": None})
    call = DeliveryOutcomes(outcomes=[sent, sent.model_copy(update={"token_hash": "h2"})])
    assert decode(topics.JOB_TOPICS["fcm"], encode(job)) == job
    assert decode(topics.FEEDBACK, encode(outcome)) == outcome
    assert decode(topics.FEEDBACK, encode(fanout)) == fanout
    assert decode(topics.FEEDBACK, encode(call)) == call
    # The wire format: the model's JSON without null fields.
    for message in (job, outcome, fanout, call):
        assert encode(message) == message.model_dump_json(exclude_none=True).encode()
    assert b"null" not in encode(job)


def test_a_verification_s_outcome_and_an_invalid_token_travel_alone() -> None:
    verify = {"kind": "verify", "app_id": "a", "provider": "fcm", "token_hash": "h"}
    outcome = {**verify, "outcome": "success", "accepted_at": "2026-01-01T00:00:00Z"}
    gone = {**outcome, "kind": "send", "notification_id": "n", "outcome": "invalid_token"}
    for alone in (outcome, gone):
        with pytest.raises(pydantic.ValidationError, match="travel alone"):
            DeliveryOutcomes.model_validate({"outcomes": [alone]})
    with pytest.raises(pydantic.ValidationError):
        DeliveryOutcomes(outcomes=[])


def test_unknown_fields_from_newer_producers_are_ignored() -> None:
    value = b'{"type":"cleanup","request_id":"r","account_id":"a","app_id":"b","new":1}'
    message = decode(topics.REGISTRATIONS, value)
    assert isinstance(message, CleanupDevices)


def test_invalid_messages_are_refused() -> None:
    with pytest.raises(pydantic.ValidationError):
        decode(topics.REGISTRATIONS, b'{"type":"register","request_id":"r"}')
    with pytest.raises(pydantic.ValidationError):
        decode(topics.FEEDBACK, b"not json")


def test_messages_are_frozen() -> None:
    content = Content(title="a")
    with pytest.raises(pydantic.ValidationError):
        content.title = "b"  # type: ignore[misc]


def test_device_events_share_one_partition_key() -> None:
    assert topics.device_key("app", hash_token("tok")) == f"app:{hash_token('tok')}".encode()


def test_a_send_to_all_of_an_app_stands_alone_on_kafka() -> None:
    base = b'{"notification_id":"n","account_id":"a","notification":{"title":"t"},'
    send = decode(topics.SEND_REQUESTS, base + b'"app_id":"app","to":{"all":true}}')
    assert isinstance(send, SendRequest)
    assert send.to.all
    refused = [
        # Every device of which app?
        b'"to":{"all":true}}',
        # A selector would name a part of `all`.
        b'"app_id":"app","to":{"all":true,"contact_ids":["c"]}}',
        b'"app_id":"app","to":{"all":true,"tokens":["t"]}}',
        # `latest` picks among a contact's devices.
        b'"app_id":"app","to":{"all":true},"options":{"send_to":"latest"}}',
    ]
    for value in refused:
        with pytest.raises(pydantic.ValidationError):
            decode(topics.SEND_REQUESTS, base + value)


def test_a_data_only_send_on_kafka_needs_no_notification() -> None:
    base = b'{"notification_id":"n","account_id":"a","app_id":"app","to":{"all":true},'
    send = decode(
        topics.SEND_REQUESTS, base + b'"data":{"sync":"1"},"options":{"content_available":true}}'
    )
    assert isinstance(send, SendRequest)
    assert send.notification == Content()
    refused = [
        # A background push shows nothing.
        b'"notification":{"title":"t"},"options":{"content_available":true}}',
        # What only a shown notification has.
        b'"data":{"sync":"1"},"options":{"badge":1}}',
        b'"data":{"sync":"1"},"options":{"mutable_content":true}}',
        b'"data":{"sync":"1"},"options":{"android":{"channel_id":"c"}}}',
    ]
    for value in refused:
        with pytest.raises(pydantic.ValidationError):
            decode(topics.SEND_REQUESTS, base + value)


OVERRIDES = (
    b'"options":{"click_url":"shop://orders/1","tag":"t","title_loc_key":"K",'
    b'"title_loc_args":["a"],"apns":{"headers":{"apns-priority":"5"},'
    b'"aps":{"thread-id":"x","alert":{"loc-key":"L","loc-args":["b"]}},"custom":{"c":"d"}},'
    b'"fcm":{"android":{"ttl":"3.5s","notification":{"tag":"t"}},"data":{"e":"f"}},'
    b'"webpush":{"headers":{"TTL":5,"Urgency":"low"},'
    b'"notification":{"requireInteraction":true,"vibrate":[1,2]}}}}'
)
SEND = b'{"notification_id":"n","account_id":"a","app_id":"app","to":{"all":true},'


def test_overrides_travel_under_the_providers_names_and_stay_hashable() -> None:
    send = decode(topics.SEND_REQUESTS, SEND + b'"notification":{"title":"t"},' + OVERRIDES)
    assert isinstance(send, SendRequest)
    options = send.options
    assert options.apns is not None
    assert options.apns.headers is not None
    assert options.apns.headers.apns_priority == "5"
    assert options.apns.custom == (("c", "d"),)
    assert options.title_loc_args == ("a",)
    # The senders key the payloads they build by the options.
    assert hash(options) == hash(options.model_copy())
    encoded = encode(send)
    assert b'"apns-priority":"5"' in encoded
    assert b'"requireInteraction":true' in encoded
    assert b'"custom":{"c":"d"}' in encoded
    assert decode(topics.SEND_REQUESTS, encoded) == send


def test_an_override_s_unknown_key_is_refused_where_the_ingest_asks() -> None:
    value = b'{"apns":{"headers":{"apns-prio":"5"}}}'
    # A topic's reader ignores it, as any field it does not know ...
    assert Options.model_validate_json(value).apns == ApnsOverride(headers=ApnsHeaders())
    # ... the ingest refuses it.
    with pytest.raises(pydantic.ValidationError, match="apns-prio"):
        Options.model_validate_json(value, context={REFUSE_UNKNOWN: True})


@pytest.mark.parametrize(
    "options",
    [
        b'{"title_loc_args":["a"]}',
        b'{"body_loc_args":["a"]}',
        b'{"apns":{"custom":{"aps":"x"}}}',
        b'{"apns":{"headers":{"apns-priority":"7"}}}',
        b'{"fcm":{"android":{"ttl":"60"}}}',
        b'{"webpush":{"headers":{"Topic":"not a topic"}}}',
        b'{"click_url":"no scheme"}',
    ],
)
def test_bad_options_are_refused(options: bytes) -> None:
    with pytest.raises(pydantic.ValidationError):
        Options.model_validate_json(options)


def _localized(notification: object) -> SendRequest:
    return SendRequest.model_validate(
        {
            "notification_id": "n",
            "account_id": "acc",
            "app_id": "app",
            "to": {"all": True},
            "notification": notification,
        }
    )


def test_a_send_on_kafka_may_carry_content_per_language() -> None:
    send = _localized(
        {"default": {"title": "Hello"}, "pt-BR": {"title": "Olá"}, "es": {"title": "Hola"}}
    )
    assert send.notification == Content(title="Hello")
    assert send.content_for("pt-br") == Content(title="Olá")
    assert send.content_for("PT-BR") == Content(title="Olá")
    # The primary language when the region has none of its own; else the default.
    assert send.content_for("es-mx") == Content(title="Hola")
    assert send.content_for("pt") == Content(title="Hello")
    assert send.content_for("de") == Content(title="Hello")
    assert send.content_for(None) == Content(title="Hello")
    assert decode(topics.SEND_REQUESTS, encode(send)) == send


@pytest.mark.parametrize(
    "notification",
    [
        {"en": {"title": "Hi"}},
        {"default": {"title": "Hi"}, "es": {"body": ""}},
        {"default": {"title": "Hi"}, "english": {"title": "Hi"}},
    ],
)
def test_per_language_content_needs_a_default_and_something_in_each(
    notification: object,
) -> None:
    with pytest.raises(pydantic.ValidationError):
        _localized(notification)


def test_send_commands_are_sends_by_default_and_cancels_by_type() -> None:
    legacy = b'{"notification_id": "n1", "account_id": "acc", "app_id": "app", "to": {"all": true}}'
    send = decode(topics.SEND_REQUESTS, legacy)
    assert isinstance(send, SendRequest)
    assert (send.type, send.send_at) == ("send", None)
    cancel = CancelSend(type="cancel", notification_id="n1", account_id="acc")
    assert decode(topics.SEND_REQUESTS, encode(cancel)) == cancel
    with pytest.raises(pydantic.ValidationError, match="does not match any of the expected tags"):
        decode(topics.SEND_REQUESTS, b'{"type": "pause", "notification_id": "n1"}')


def test_send_at_needs_a_time_zone_and_is_bounded() -> None:
    base = {"notification_id": "n1", "account_id": "acc", "app_id": "app", "to": {"all": True}}
    accepted = datetime(2026, 12, 1, tzinfo=UTC)
    at = SendRequest.model_validate(
        {**base, "accepted_at": accepted, "send_at": "2026-12-02T09:00:00-05:00"}
    )
    assert at.send_at == datetime(2026, 12, 2, 14, tzinfo=UTC)
    assert at.scheduled(accepted)
    assert not at.scheduled(datetime(2026, 12, 2, 14, tzinfo=UTC))
    with pytest.raises(pydantic.ValidationError, match="timezone"):
        SendRequest.model_validate({**base, "send_at": "2026-12-02T09:00:00"})
    with pytest.raises(pydantic.ValidationError, match="at most 30 days"):
        SendRequest.model_validate(
            {**base, "accepted_at": accepted, "send_at": accepted + MAX_SCHEDULE_AHEAD * 1.01}
        )
    assert not SendRequest.model_validate(base).scheduled(accepted)
