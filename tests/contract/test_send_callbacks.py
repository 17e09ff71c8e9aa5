"""A native send's callback: taken and signed at the ingest, refused in the native error
shape when Pushline may not call it, and made once when the send ends, however often
feedback applies the events that end it (the ingest in-process on the real Kafka and
store; feedback's steps called as its worker calls them)."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core import topics
from services.core.callbacks import NOTE_GRACE, fire_devices, fire_final, sweep
from services.core.errors import KafkaUnavailableError
from services.core.events import (
    DeliveryOutcome,
    FanoutCompleted,
    Outcome,
    SendRequest,
    WebhookCall,
    utc_now,
)
from services.core.settings import Settings
from services.core.store.callback_notes import CallbackNotes
from services.core.store.client import Document
from services.core.store.notifications import NotificationsRepository
from services.core.tokens import hash_token
from services.feedback.deliveries import apply_outcomes
from services.ingest.callbacks import signature
from tests.contract.conftest import TenantFactory
from tests.integration.kafka_io import read

pytestmark = pytest.mark.integration

HOOK = "https://hooks.example.com/pushline/sends?tenant=7"


def auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}


def body(app_id: str, **more: object) -> dict[str, object]:
    return {
        "app_id": app_id,
        "to": {"tokens": ["tok-1", "tok-2", "tok-3"]},
        "notification": {"title": "Hola"},
        **more,
    }


async def test_a_callback_url_is_signed_with_the_callers_key_and_never_shown(
    client: httpx.AsyncClient,
    tenants: TenantFactory,
    ingest_settings: Settings,
    db: AsyncDatabase[Document],
) -> None:
    tenant = await tenants.make()
    sent = await client.post(
        "/v1/notifications",
        json=body(
            tenant.app.id,
            callback_url=HOOK,
            callback_events=["invalid_token", "failed", "invalid_token"],
        ),
        headers=auth(tenant.api_key),
    )
    assert sent.status_code == 202, sent.text
    notification_id = sent.json()["id"]

    send = await read(
        ingest_settings,
        topics.SEND_REQUESTS,
        lambda m: isinstance(m, SendRequest) and m.notification_id == notification_id,
    )
    assert isinstance(send, SendRequest)
    assert send.callback is not None
    assert send.callback.url == HOOK
    assert send.callback.signature == signature(tenant.api_key, HOOK)
    assert send.callback.events == ["failed", "invalid_token"]

    status = await client.get(f"/v1/notifications/{notification_id}", headers=auth(tenant.api_key))
    assert status.status_code == 200
    assert "callback" not in status.json()
    assert send.callback.signature not in status.text
    listed = await client.get("/v1/notifications", headers=auth(tenant.api_key))
    assert send.callback.signature not in listed.text


@pytest.mark.parametrize(
    ("change", "field", "why"),
    [
        ({"callback_url": "ftp://hooks.example.com/x"}, "callback_url", "http(s) URL"),
        ({"callback_url": "http://127.0.0.1:8080/hook"}, "callback_url", "non-public"),
        ({"callback_url": "http://169.254.169.254/latest"}, "callback_url", "non-public"),
        ({"callback_url": "http://[::1]/hook"}, "callback_url", "non-public"),
        ({"callback_url": "http://localhost/hook"}, "callback_url", "this machine"),
        ({"callback_url": "https://x.example.com/" + "a" * 2048}, "callback_url", "at most"),
        ({"callback_url": 7}, "callback_url", "string"),
        ({"callback_events": ["failed"]}, "callback_events", "callback_url"),
        ({"callback_url": HOOK, "callback_events": ["retry"]}, "callback_events[0]", ""),
        ({"callback_url": HOOK, "callback_events": "failed"}, "callback_events", ""),
    ],
)
async def test_a_callback_pushline_may_not_call_is_a_problem(
    client: httpx.AsyncClient,
    tenants: TenantFactory,
    db: AsyncDatabase[Document],
    change: dict[str, object],
    field: str,
    why: str,
) -> None:
    tenant = await tenants.make()
    response = await client.post(
        "/v1/notifications", json=body(tenant.app.id, **change), headers=auth(tenant.api_key)
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problems = response.json()["errors"]
    assert any(p["field"].startswith(field) and why in p["message"] for p in problems), problems
    assert await db.notifications.count_documents({}) == 0


async def _accepted(db: AsyncDatabase[Document], events: list[str]) -> SendRequest:
    send = SendRequest.model_validate(
        {
            "notification_id": f"n-{utc_now().timestamp()}",
            "account_id": "acc-1",
            "app_id": "app-1",
            "to": {"tokens": ["tok-1", "tok-2", "tok-3"]},
            "notification": {"title": "Hola"},
            "callback": {"url": HOOK, "signature": "c2ln", "events": events},
        }
    )
    await NotificationsRepository(db).accept(send)
    return send


def _outcome(send: SendRequest, token: str, outcome: Outcome) -> DeliveryOutcome:
    return DeliveryOutcome(
        notification_id=send.notification_id,
        app_id="app-1",
        provider="fcm",
        platform="android",
        token_hash=hash_token(token),
        outcome=outcome,
        reason="UNREGISTERED" if outcome == "invalid_token" else None,
        accepted_at=send.accepted_at,
    )


async def test_the_final_callback_is_made_once_under_redelivery(
    db: AsyncDatabase[Document],
) -> None:
    send = await _accepted(db, [])
    calls: list[WebhookCall] = []

    async def queue(call: WebhookCall) -> None:
        calls.append(call)

    await NotificationsRepository(db).fanout_completed(
        FanoutCompleted(notification_id=send.notification_id, jobs=3, by_platform={"android": 3})
    )
    first = [_outcome(send, "tok-1", "success"), _outcome(send, "tok-2", "invalid_token")]
    await apply_outcomes(first, db)
    # Not final yet: nothing to call, nothing claimed.
    assert await fire_final(db, [send.notification_id], queue) == 0

    last = [_outcome(send, "tok-3", "failed")]
    for _ in range(3):  # the batch that ends it, redelivered twice
        await apply_outcomes([*first, *last], db)
        await fire_final(db, [send.notification_id], queue)

    (call,) = calls
    assert call.url == HOOK
    assert call.notification_id == send.notification_id
    assert call.body["state"] == "done"
    assert call.body["signature"] == "c2ln"
    counters = call.body["counters"]
    assert isinstance(counters, dict)
    assert {k: counters[k] for k in ("targeted", "sent", "invalid", "failed")} == {
        "targeted": 3,
        "sent": 1,
        "invalid": 1,
        "failed": 1,
    }
    assert call.body["platforms"] == {
        "android": {"targeted": 3, "sent": 1, "invalid": 1, "failed": 1}
    }


async def test_a_claim_kafka_did_not_take_is_given_up_and_made_by_the_retry(
    db: AsyncDatabase[Document],
) -> None:
    send = await _accepted(db, [])
    await NotificationsRepository(db).fanout_completed(
        FanoutCompleted(notification_id=send.notification_id, jobs=0)
    )

    async def refused(call: WebhookCall) -> None:
        raise KafkaUnavailableError("Kafka did not take the messages")

    with pytest.raises(KafkaUnavailableError):
        await fire_final(db, [send.notification_id], refused)

    calls: list[WebhookCall] = []

    async def queue(call: WebhookCall) -> None:
        calls.append(call)

    assert await fire_final(db, [send.notification_id], queue) == 1
    assert await fire_final(db, [send.notification_id], queue) == 0
    assert len(calls) == 1


async def _ended(db: AsyncDatabase[Document]) -> SendRequest:
    """A send that asked for a callback and is done (it had no device)."""
    send = await _accepted(db, [])
    await NotificationsRepository(db).fanout_completed(
        FanoutCompleted(notification_id=send.notification_id, jobs=0)
    )
    return send


async def _age_notes(db: AsyncDatabase[Document], by: timedelta) -> None:
    await db.callback_notes.update_many({}, {"$set": {"at": utc_now() - by}})


async def test_a_final_callback_leaves_no_note_once_kafka_has_it(
    db: AsyncDatabase[Document],
) -> None:
    send = await _ended(db)
    calls: list[WebhookCall] = []

    async def queue(call: WebhookCall) -> None:
        assert await db.callback_notes.count_documents({"_id": send.notification_id}) == 1
        calls.append(call)

    assert await fire_final(db, [send.notification_id], queue) == 1
    assert len(calls) == 1
    assert await db.callback_notes.count_documents({}) == 0


async def test_a_callback_whose_worker_died_after_claiming_it_is_made_by_the_sweep(
    db: AsyncDatabase[Document],
) -> None:
    send = await _ended(db)
    # What fire_final leaves of a worker killed before Kafka answered: the note and the claim.
    await CallbackNotes(db).open(send.notification_id)
    assert await NotificationsRepository(db).claim_callback(send.notification_id) is not None
    calls: list[WebhookCall] = []

    async def queue(call: WebhookCall) -> None:
        calls.append(call)

    # Within the grace the worker may still be making it.
    await _age_notes(db, NOTE_GRACE - timedelta(seconds=30))
    assert await sweep(db, queue) == 0
    await _age_notes(db, NOTE_GRACE + timedelta(seconds=1))
    assert await sweep(db, queue) == 1
    assert await sweep(db, queue) == 0
    assert await fire_final(db, [send.notification_id], queue) == 0
    (call,) = calls
    assert (call.notification_id, call.body["state"]) == (send.notification_id, "done")
    assert await db.callback_notes.count_documents({}) == 0


async def test_a_callback_kafka_refused_before_its_worker_died_is_made_by_the_sweep(
    db: AsyncDatabase[Document],
) -> None:
    send = await _ended(db)

    async def refused(call: WebhookCall) -> None:
        raise KafkaUnavailableError("Kafka did not take the messages")

    with pytest.raises(KafkaUnavailableError):
        await fire_final(db, [send.notification_id], refused)
    # The worker dies instead of trying again: its note stays, its claim was given up.
    await _age_notes(db, NOTE_GRACE + timedelta(seconds=1))
    calls: list[WebhookCall] = []

    async def queue(call: WebhookCall) -> None:
        calls.append(call)

    assert await sweep(db, queue) == 1
    assert len(calls) == 1
    assert await db.callback_notes.count_documents({}) == 0


async def test_a_callback_whose_worker_died_before_claiming_it_is_made_by_the_sweep(
    db: AsyncDatabase[Document],
) -> None:
    send = await _ended(db)
    # Noted, then killed before the claim.
    await CallbackNotes(db).open(send.notification_id)
    await _age_notes(db, NOTE_GRACE + timedelta(seconds=1))
    calls: list[WebhookCall] = []

    async def queue(call: WebhookCall) -> None:
        calls.append(call)

    assert await sweep(db, queue) == 1
    assert await fire_final(db, [send.notification_id], queue) == 0
    assert len(calls) == 1
    assert await NotificationsRepository(db).claimed_callback(send.notification_id) is not None


async def test_device_events_are_those_asked_for_each_first_answer_once(
    db: AsyncDatabase[Document],
) -> None:
    send = await _accepted(db, ["invalid_token"])
    quiet = await _accepted(db, [])
    outcomes = [
        _outcome(send, "tok-1", "success"),
        _outcome(send, "tok-2", "invalid_token"),
        _outcome(quiet, "tok-2", "invalid_token"),
    ]
    reported = await apply_outcomes(outcomes, db)
    # The provider answering a send again is no new event.
    again = _outcome(send, "tok-2", "invalid_token").model_copy(update={"answered_at": utc_now()})
    assert await apply_outcomes([again], db) == []

    calls: list[WebhookCall] = []

    async def queue(call: WebhookCall) -> None:
        calls.append(call)

    await fire_devices(db, reported, queue)
    (call,) = calls
    assert call.notification_id == send.notification_id
    events = call.body["events"]
    assert isinstance(events, list)
    assert [(e["device_id"], e["outcome"], e["reason"]) for e in events] == [  # type: ignore[index,call-overload]
        (hash_token("tok-2"), "invalid_token", "UNREGISTERED")
    ]


async def test_an_idempotency_key_matches_the_same_callback_sent_with_another_key(
    client: httpx.AsyncClient, tenants: TenantFactory, db: AsyncDatabase[Document]
) -> None:
    tenant = await tenants.make()
    _, second_key = await tenants.accounts.keys.issue(tenant.account_id)
    request = body(tenant.app.id, callback_url=HOOK, callback_events=["failed"])
    key = {"Idempotency-Key": "order-42-shipped"}
    first = await client.post(
        "/v1/notifications", json=request, headers={**auth(tenant.api_key), **key}
    )
    again = await client.post(
        "/v1/notifications", json=request, headers={**auth(second_key), **key}
    )
    assert first.status_code == again.status_code == 202, again.text
    assert first.json() == again.json()
    other = await client.post(
        "/v1/notifications",
        json={**request, "callback_url": HOOK + "&x=1"},
        headers={**auth(second_key), **key},
    )
    assert other.status_code == 422, other.text
    assert await db.notifications.count_documents({}) == 1
