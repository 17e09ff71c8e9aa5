"""The message options as each provider receives them, from the emulators' records: a
background push, and how a shown notification looks (badge, sound, thread, category,
Android channel) as the real provider's own fields."""

from __future__ import annotations

from services.core.events import AndroidOptions, Content, Options
from services.core.providers.apns import APNsProvider
from services.core.providers.fcm import FCMProvider
from services.core.providers.webpush import WebPushProvider
from tests.integration.providers.emulated import DEVICE, Emulators, job, subscribed, webpush_job
from tests.unit.providers.keys import VapidPair

SHOWN = {
    "notification": Content(title="Hi", body="There"),
    "options": Options(
        badge=4,
        sound="chime.caf",
        thread_id="order-42",
        category="ORDER",
        interruption_level="time-sensitive",
        mutable_content=True,
        android=AndroidOptions(channel_id="orders", color="#00AAFF", icon="ic_order"),
    ),
}
# What APNs receives of them, straight or through FCM.
APS_OPTIONS = {
    "badge": 4,
    "sound": "chime.caf",
    "thread-id": "order-42",
    "category": "ORDER",
    "interruption-level": "time-sensitive",
    "mutable-content": 1,
}
BACKGROUND = {
    "notification": Content(),
    "data": {"sync": "inbox"},
    "options": Options(content_available=True),
}


async def test_fcm_maps_shown_options_to_android_and_apns(
    fresh: Emulators, fcm: FCMProvider
) -> None:
    [result] = await fcm.send([job("fcm", "device-1", **SHOWN)])
    assert result.outcome == "success"
    [record] = fresh.fcm.controls.records()
    message = record.payload["message"]
    assert message["android"] == {
        "priority": "high",
        "notification": {
            "sound": "chime.caf",
            "click_action": "ORDER",
            "channel_id": "orders",
            "color": "#00AAFF",
            "icon": "ic_order",
        },
    }
    assert message["apns"]["payload"] == {"aps": APS_OPTIONS}
    assert message["webpush"] == {"headers": {"Urgency": "high"}}


async def test_fcm_background_push_is_a_data_message(fresh: Emulators, fcm: FCMProvider) -> None:
    [result] = await fcm.send([job("fcm", "device-1", **BACKGROUND)])
    assert result.outcome == "success"
    [record] = fresh.fcm.controls.records()
    assert record.payload == {
        "message": {
            "token": "device-1",
            "data": {"sync": "inbox"},
            "android": {"priority": "high"},
            "apns": {
                "headers": {"apns-priority": "5", "apns-push-type": "background"},
                "payload": {"aps": {"content-available": 1}},
            },
            "webpush": {"headers": {"Urgency": "high"}},
        }
    }


async def test_apns_carries_shown_options_in_aps(fresh: Emulators, apns: APNsProvider) -> None:
    [result] = await apns.send([job("apns", DEVICE, **SHOWN)])
    assert result.outcome == "success"
    [record] = fresh.apns.controls.records()
    assert record.payload == {"aps": {"alert": {"title": "Hi", "body": "There"}, **APS_OPTIONS}}
    assert (record.headers["apns-push-type"], record.headers["apns-priority"]) == ("alert", "10")


async def test_apns_background_push_at_priority_5(fresh: Emulators, apns: APNsProvider) -> None:
    [result] = await apns.send([job("apns", DEVICE, **BACKGROUND)])
    assert result.outcome == "success"
    [record] = fresh.apns.controls.records()
    assert record.payload == {"sync": "inbox", "aps": {"content-available": 1}}
    assert (record.headers["apns-push-type"], record.headers["apns-priority"]) == (
        "background",
        "5",
    )


async def test_webpush_has_no_shown_options_and_carries_background_data(
    fresh: Emulators, webpush: WebPushProvider, vapid: VapidPair
) -> None:
    subscription = subscribed(fresh, vapid)
    # One after the other, so the records are in this order.
    [shown] = await webpush.send([webpush_job(subscription, **SHOWN)])
    [background] = await webpush.send([webpush_job(subscription, **BACKGROUND)])
    assert (shown.outcome, background.outcome) == ("success", "success")
    records = fresh.webpush.controls.records()
    assert [record.payload for record in records] == [
        {"notification": {"title": "Hi", "body": "There"}},
        {"data": {"sync": "inbox"}},
    ]
