"""A send's callback bodies: the final call with the status's counters, device events in
batches naming devices by their token's hash, and the signature a receiver checks."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

from pydantic import JsonValue

from services.core.callbacks import EVENTS_PER_CALL, device_calls, final_call
from services.core.events import DeliveryOutcome, Outcome, WebhookCall
from services.core.store.notifications import COUNTERS
from services.core.tokens import hash_token
from services.ingest.callbacks import signature

URL = "https://hooks.example.com/pushline?tenant=7"
AT = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def callback(events: list[str] | None = None) -> dict[str, object]:
    return {
        "url": URL,
        "headers": {"X-Tenant": "7"},
        "signature": signature("pl_key", URL),
        "events": events or [],
    }


def outcome(token: str, result: Outcome, reason: str | None = None) -> DeliveryOutcome:
    return DeliveryOutcome(
        notification_id="n-1",
        app_id="app-1",
        provider="fcm",
        platform="android",
        token_hash=hash_token(token),
        outcome=result,
        reason=reason,
        accepted_at=AT,
        answered_at=AT,
    )


def events_of(call: WebhookCall) -> list[dict[str, JsonValue]]:
    events = call.body["events"]
    assert isinstance(events, list)
    found = [e for e in events if isinstance(e, dict)]
    assert len(found) == len(events)
    return found


def test_the_signature_is_base64_hmac_sha256_of_the_url_keyed_by_the_api_key() -> None:
    expected = base64.b64encode(hmac.new(b"pl_key", URL.encode(), hashlib.sha256).digest()).decode()
    assert signature("pl_key", URL) == expected
    assert signature("pl_other", URL) != expected


def test_the_final_call_carries_state_every_counter_and_the_signature() -> None:
    notification = {
        "_id": "n-1",
        "app_id": "app-1",
        "state": "done",
        "counters": {"targeted": 3, "sent": 2, "invalid": 1},
        "by_platform": {"android": {"targeted": 3, "sent": 2, "invalid": 1}},
        "callback": callback(),
    }
    call = final_call(notification)
    assert (call.url, call.headers, call.notification_id) == (URL, {"X-Tenant": "7"}, "n-1")
    assert call.body == {
        "type": "notification",
        "id": "n-1",
        "app_id": "app-1",
        "state": "done",
        "counters": {
            name: {"targeted": 3, "sent": 2, "invalid": 1}.get(name, 0) for name in COUNTERS
        },
        "platforms": {"android": {"targeted": 3, "sent": 2, "invalid": 1}},
        "signature": signature("pl_key", URL),
    }
    # It travels on push.webhooks as JSON and comes back the same.
    assert WebhookCall.model_validate_json(call.model_dump_json()) == call


def test_device_events_are_the_asked_outcomes_in_batches_without_tokens() -> None:
    outcomes = [outcome(f"gone-{i}", "invalid_token", "UNREGISTERED") for i in range(250)]
    outcomes += [outcome("ok", "success"), outcome("bad", "failed", "INVALID_ARGUMENT")]
    outcomes.append(
        outcome("elsewhere", "invalid_token").model_copy(update={"notification_id": "n-2"})
    )

    calls = device_calls("n-1", callback(["invalid_token", "failed"]), outcomes)

    assert [len(events_of(c)) for c in calls] == [EVENTS_PER_CALL, EVENTS_PER_CALL, 51]
    assert len({c.webhook_id for c in calls}) == 3
    events = [e for c in calls for e in events_of(c)]
    assert events[0] == {
        "device_id": hash_token("gone-0"),
        "outcome": "invalid_token",
        "reason": "UNREGISTERED",
        "platform": "android",
        "at": AT.isoformat(),
    }
    assert events[-1]["device_id"] == hash_token("bad")
    assert all(c.body["signature"] == signature("pl_key", URL) for c in calls)
    assert all(c.body["id"] == "n-1" and c.body["type"] == "devices" for c in calls)
    assert "gone-0" not in "".join(c.model_dump_json() for c in calls)


def test_no_device_calls_without_asked_events() -> None:
    assert device_calls("n-1", callback(), [outcome("gone", "invalid_token")]) == []
