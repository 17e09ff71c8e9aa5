"""How a worker writes a dead letter, and what `pushline dlq list` shows of one: ids and
reasons, never a device token."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from services.core import deadletters, topics
from services.core.deadletters import Parked, describe
from services.core.events import DeadLetter, PushJob
from services.core.kafka import encode
from services.core.tokens import hash_token

FAILED_AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def parked(letter: DeadLetter) -> Parked:
    return Parked("push.dlq", 3, 41, letter)


def test_a_letter_keeps_a_malformed_message_and_cuts_a_long_error() -> None:
    written = deadletters.letter(topics.REGISTRATIONS, b"app:\xff", b'{"token": \xff', "x" * 5000)
    assert (written.topic, written.key, written.value) == (
        "push.registrations",
        "app:\ufffd",
        '{"token": \ufffd',
    )
    assert written.error == "x" * deadletters.ERROR_LENGTH
    assert (written.attempts, written.replayable) == (0, False)
    # A message without a key is replayed without one.
    assert deadletters.letter(topics.REGISTRATIONS, None, b"{}", "bad").key is None


def test_a_dead_job_shows_its_notification_app_provider_and_token_hash() -> None:
    job = PushJob(
        notification_id="n7",
        account_id="acc",
        app_id="app-a",
        provider="apns",
        platform="ios",
        token="secret-device-token",
        token_hash=hash_token("secret-device-token"),
    )
    letter = DeadLetter(
        topic=topics.JOB_TOPICS["apns"].name,
        value=encode(job).decode(),
        error="ServiceUnavailable (503)",
        attempts=5,
        failed_at=FAILED_AT,
        app_id="app-a",
        reason="ServiceUnavailable",
        replayable=True,
    )
    replayed = datetime(2026, 3, 2, tzinfo=UTC)
    shown = describe(parked(letter), replayed)
    assert shown == {
        "letter": "push.dlq/3/41",
        "failed_at": FAILED_AT.isoformat(),
        "topic": "push.jobs.apns",
        "notification_id": "n7",
        "app_id": "app-a",
        "provider": "apns",
        "token_hash": hash_token("secret-device-token"),
        "reason": "ServiceUnavailable",
        "attempts": 5,
        "replayable": True,
        "replayed": replayed.isoformat(),
        "error": "ServiceUnavailable (503)",
    }
    assert "secret-device-token" not in json.dumps(shown)


def test_an_unreadable_message_shows_its_topic_and_the_error_s_first_line_only() -> None:
    letter = DeadLetter(
        topic=topics.JOB_TOPICS["fcm"].name,
        value='{"token": "secret-device-token", "provider": ',
        error="1 validation error for PushJob\n  input_value='secret-device-token'",
        failed_at=FAILED_AT,
    )
    shown = describe(parked(letter), None)
    assert (shown["provider"], shown["notification_id"], shown["replayed"]) == ("fcm", None, None)
    assert shown["error"] == "1 validation error for PushJob"
    assert "secret-device-token" not in json.dumps(shown)
