"""The message options as each provider receives them, from the emulators' records: a
background push, how a shown notification looks (badge, sound, thread, category, Android
channel, image, click URL, tag, localisation keys), and the per-provider overrides merged
last, as the real provider's own fields."""

from __future__ import annotations

from services.core.events import AndroidOptions, Content, Options
from services.core.overrides import (
    ApnsHeaders,
    ApnsOverride,
    Aps,
    FcmAndroid,
    FcmAndroidNotification,
    FcmOverride,
    WebPushHeaders,
    WebPushNotification,
    WebPushOverride,
)
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


RICH = {
    "notification": Content(title="Order 42", body="Shipped", image_url="https://i.example/a.png"),
    "data": {"order": "42"},
    "options": Options(
        click_url="https://shop.example/orders/42",
        tag="order-42",
        title_loc_key="ORDER_TITLE",
        title_loc_args=("42",),
        body_loc_key="ORDER_BODY",
        body_loc_args=("Ana",),
        apns=ApnsOverride(
            headers=ApnsHeaders(apns_priority="5", apns_collapse_id="order-42"),
            aps=Aps(relevance_score=0.5),
            custom={"campaign": "spring"},
        ),
        fcm=FcmOverride(
            data={"campaign": "spring"},
            android=FcmAndroid(
                ttl="60s",
                notification=FcmAndroidNotification(notification_priority="PRIORITY_HIGH"),
            ),
        ),
        webpush=WebPushOverride(
            headers=WebPushHeaders(urgency="low", topic="order-42"),
            notification=WebPushNotification(require_interaction=True),
        ),
    ),
}
LOCALISED = {
    "title": "Order 42",
    "body": "Shipped",
    "title-loc-key": "ORDER_TITLE",
    "title-loc-args": ["42"],
    "loc-key": "ORDER_BODY",
    "loc-args": ["Ana"],
}


async def test_fcm_receives_the_image_link_tag_localisation_and_its_override(
    fresh: Emulators, fcm: FCMProvider
) -> None:
    [result] = await fcm.send([job("fcm", "device-1", **RICH)])
    assert result.outcome == "success"
    [record] = fresh.fcm.controls.records()
    message = record.payload["message"]
    assert message["notification"] == {
        "title": "Order 42",
        "body": "Shipped",
        "image": "https://i.example/a.png",
    }
    assert message["data"] == {
        "order": "42",
        "click_url": "https://shop.example/orders/42",
        "campaign": "spring",
    }
    assert message["android"] == {
        "priority": "high",
        "ttl": "60s",
        "notification": {
            "tag": "order-42",
            "title_loc_key": "ORDER_TITLE",
            "title_loc_args": ["42"],
            "body_loc_key": "ORDER_BODY",
            "body_loc_args": ["Ana"],
            "notification_priority": "PRIORITY_HIGH",
        },
    }
    # The APNs override is APNs' own: FCM's apns block has what the common options make.
    assert message["apns"] == {
        "headers": {"apns-priority": "10"},
        "payload": {"aps": {"alert": LOCALISED, "mutable-content": 1}},
    }
    assert message["webpush"] == {
        "headers": {"Urgency": "high"},
        "fcm_options": {"link": "https://shop.example/orders/42"},
    }


async def test_apns_receives_the_image_link_localisation_and_its_override(
    fresh: Emulators, apns: APNsProvider
) -> None:
    [result] = await apns.send([job("apns", DEVICE, **RICH)])
    assert result.outcome == "success"
    [record] = fresh.apns.controls.records()
    assert record.payload == {
        "order": "42",
        "image_url": "https://i.example/a.png",
        "click_url": "https://shop.example/orders/42",
        "campaign": "spring",
        "aps": {"alert": LOCALISED, "mutable-content": 1, "relevance-score": 0.5},
    }
    headers = record.headers
    assert (headers["apns-push-type"], headers["apns-priority"]) == ("alert", "5")
    assert headers["apns-collapse-id"] == "order-42"


async def test_webpush_receives_the_image_link_tag_and_its_override(
    fresh: Emulators, webpush: WebPushProvider, vapid: VapidPair
) -> None:
    [result] = await webpush.send([webpush_job(subscribed(fresh, vapid), **RICH)])
    assert result.outcome == "success"
    [record] = fresh.webpush.controls.records()
    # No localisation keys: a page has no string table; the title and body are shown.
    assert record.payload == {
        "notification": {
            "title": "Order 42",
            "body": "Shipped",
            "image": "https://i.example/a.png",
            "tag": "order-42",
            "data": {"url": "https://shop.example/orders/42"},
            "requireInteraction": True,
        },
        "data": {"order": "42"},
    }
    assert (record.headers["urgency"], record.headers["topic"]) == ("low", "order-42")
