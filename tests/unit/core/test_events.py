from __future__ import annotations

import pydantic
import pytest

from services.core import topics
from services.core.events import (
    CleanupDevices,
    Content,
    DeliveryOutcome,
    DeliveryOutcomes,
    FanoutCompleted,
    PushJob,
    RegisterDevice,
    SendRequest,
)
from services.core.kafka import decode, encode
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
