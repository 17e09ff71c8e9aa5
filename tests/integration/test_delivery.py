"""End to end: a send request on Kafka reaches FCM, APNs and Web Push (the emulators,
real protocol servers) through the resolver, the sender and feedback, and the
notification ends `done` with exact counters."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core import topics
from services.core.events import (
    AndroidOptions,
    Audience,
    Content,
    DeadLetter,
    Options,
    SendRequest,
    utc_now,
)
from services.core.settings import Settings
from services.core.store.accounts import Accounts
from services.core.store.client import Document
from services.sandbox.emulators.state import TokenState
from tests.devices import store_devices
from tests.integration.kafka_io import eventually, publish, read
from tests.integration.pipeline import (
    ACCOUNT,
    APP,
    Emulators,
    Pipeline,
    device,
    finished,
    running_pipeline,
    sandbox_app,
    send_to_ana,
)

pytestmark = pytest.mark.integration

APNS_TOKEN = "ab" * 32


@pytest.fixture
async def pipeline(child_env: dict[str, str], emulators: Emulators) -> AsyncIterator[Pipeline]:
    async with running_pipeline(
        {
            **child_env,
            **emulators.env,
            "PUSHLINE_SEND_ATTEMPTS": "3",
            "PUSHLINE_RETRY_BASE_SECONDS": "0.1",
        }
    ) as running:
        yield running


@pytest.mark.usefixtures("pipeline")
async def test_a_notification_reaches_every_provider_and_counts_exactly(
    settings: Settings, db: AsyncDatabase[Document], emulators: Emulators
) -> None:
    await sandbox_app(db)
    subscription = emulators.webpush.subscribe()
    gone = f"fcm-gone-{uuid.uuid4().hex}"
    emulators.fcm.controls.mark([gone], TokenState.UNREGISTERED)
    await store_devices(
        db,
        [
            device("fcm-token-ana", "android", "fcm"),
            device(gone, "android", "fcm"),
            device(APNS_TOKEN, "ios", "apns"),
            device(subscription["endpoint"], "web", "webpush", subscription=subscription),
        ],
    )
    send = await send_to_ana(settings)
    notification = await finished(db, send)
    counters = notification["counters"]
    assert (counters["targeted"], counters["sent"], counters["invalid"], counters["failed"]) == (
        4,
        3,
        1,
        0,
    )
    invalid = await db.devices.find_one({"token": gone})
    assert invalid is not None
    assert (invalid["status"], invalid["invalid_reason"]) == ("invalid", "UNREGISTERED")

    (fcm,) = [r for r in emulators.fcm.controls.records() if r.status == 200]
    message = fcm.payload["message"]
    assert message["notification"] == {"title": "Hola Ana", "body": "Tu pedido va en camino"}
    assert message["data"] == {"order": "42"}
    assert (message.get("token") or message.get("fid")) == "fcm-token-ana"

    (apns,) = emulators.apns.controls.records()
    assert apns.status == 200
    assert apns.target == APNS_TOKEN
    assert apns.payload["aps"]["alert"] == {"title": "Hola Ana", "body": "Tu pedido va en camino"}
    assert apns.payload["order"] == "42"

    (webpush,) = emulators.webpush.controls.records()
    assert webpush.status == 201
    assert webpush.plaintext is not None
    assert b"Hola Ana" in webpush.plaintext


@pytest.mark.usefixtures("pipeline")
async def test_a_background_push_and_the_shown_options_reach_each_provider(
    settings: Settings, db: AsyncDatabase[Document], emulators: Emulators
) -> None:
    await sandbox_app(db)
    subscription = emulators.webpush.subscribe()
    await store_devices(
        db,
        [
            device("fcm-token-ana", "android", "fcm"),
            device(APNS_TOKEN, "ios", "apns"),
            device(subscription["endpoint"], "web", "webpush", subscription=subscription),
        ],
    )
    background = SendRequest(
        notification_id=f"n-{uuid.uuid4()}",
        account_id=ACCOUNT,
        app_id=APP,
        to=Audience(contact_ids=["ana"]),
        data={"sync": "inbox"},
        options=Options(content_available=True),
    )
    await publish(
        settings,
        topics.SEND_REQUESTS,
        topics.notification_key(background.notification_id),
        background,
    )
    assert (await finished(db, background))["counters"]["sent"] == 3
    (fcm,) = emulators.fcm.controls.records()
    assert "notification" not in fcm.payload["message"]
    assert fcm.payload["message"]["data"] == {"sync": "inbox"}
    (apns,) = emulators.apns.controls.records()
    assert apns.payload == {"sync": "inbox", "aps": {"content-available": 1}}
    assert (apns.headers["apns-push-type"], apns.headers["apns-priority"]) == ("background", "5")
    (webpush,) = emulators.webpush.controls.records()
    assert webpush.payload == {"data": {"sync": "inbox"}}

    shown = background.model_copy(
        update={
            "notification_id": f"n-{uuid.uuid4()}",
            "notification": Content(title="Hola Ana"),
            "data": {},
            "options": Options(
                badge=1, sound="default", android=AndroidOptions(channel_id="orders")
            ),
        }
    )
    await publish(
        settings, topics.SEND_REQUESTS, topics.notification_key(shown.notification_id), shown
    )
    assert (await finished(db, shown))["counters"]["sent"] == 3
    message = emulators.fcm.controls.records()[-1].payload["message"]
    assert message["android"]["notification"] == {"sound": "default", "channel_id": "orders"}
    apns = emulators.apns.controls.records()[-1]
    assert apns.payload["aps"] == {"alert": {"title": "Hola Ana"}, "badge": 1, "sound": "default"}
    assert emulators.webpush.controls.records()[-1].payload == {
        "notification": {"title": "Hola Ana"}
    }


# A send request as another team's producer writes it (schemas/push.send-requests.json).
RICH_SEND = """{
  "notification_id": "%s", "account_id": "%s", "app_id": "%s",
  "to": {"contact_ids": ["ana"]},
  "notification": {"title": "Order 42", "body": "Shipped"},
  "options": {
    "click_url": "shop://orders/42", "tag": "order-42",
    "body_loc_key": "ORDER_BODY", "body_loc_args": ["Ana"],
    "apns": {"headers": {"apns-priority": "5"}, "custom": {"campaign": "spring"}},
    "fcm": {"android": {"notification": {"visibility": "PRIVATE"}}},
    "webpush": {"headers": {"Urgency": "low"}, "notification": {"silent": true}}
  }
}"""


@pytest.mark.usefixtures("pipeline")
async def test_links_tags_localisation_and_overrides_on_kafka_reach_each_provider(
    settings: Settings, db: AsyncDatabase[Document], emulators: Emulators
) -> None:
    await sandbox_app(db)
    subscription = emulators.webpush.subscribe()
    await store_devices(
        db,
        [
            device("fcm-token-ana", "android", "fcm"),
            device(APNS_TOKEN, "ios", "apns"),
            device(subscription["endpoint"], "web", "webpush", subscription=subscription),
        ],
    )
    send = SendRequest.model_validate_json(RICH_SEND % (f"n-{uuid.uuid4()}", ACCOUNT, APP))
    await publish(
        settings, topics.SEND_REQUESTS, topics.notification_key(send.notification_id), send
    )
    assert (await finished(db, send))["counters"]["sent"] == 3
    (fcm,) = emulators.fcm.controls.records()
    message = fcm.payload["message"]
    assert message["data"] == {"click_url": "shop://orders/42"}
    assert message["android"]["notification"] == {
        "tag": "order-42",
        "body_loc_key": "ORDER_BODY",
        "body_loc_args": ["Ana"],
        "visibility": "PRIVATE",
    }
    (apns,) = emulators.apns.controls.records()
    assert apns.payload == {
        "click_url": "shop://orders/42",
        "campaign": "spring",
        "aps": {
            "alert": {
                "title": "Order 42",
                "body": "Shipped",
                "loc-key": "ORDER_BODY",
                "loc-args": ["Ana"],
            }
        },
    }
    assert apns.headers["apns-priority"] == "5"
    (webpush,) = emulators.webpush.controls.records()
    assert webpush.payload == {
        "notification": {
            "title": "Order 42",
            "body": "Shipped",
            "tag": "order-42",
            "data": {"url": "shop://orders/42"},
            "silent": True,
        }
    }
    assert webpush.headers["urgency"] == "low"


@pytest.mark.usefixtures("pipeline")
async def test_each_device_is_sent_the_content_of_its_language(
    settings: Settings, db: AsyncDatabase[Document], emulators: Emulators
) -> None:
    await sandbox_app(db)
    subscription = emulators.webpush.subscribe()
    await store_devices(
        db,
        [
            device("fcm-token-ana", "android", "fcm", language="es-mx"),
            device(APNS_TOKEN, "ios", "apns", language="pt-br"),
            device(subscription["endpoint"], "web", "webpush", subscription=subscription),
        ],
    )
    # On Kafka as the native API takes it: a map of languages with a default.
    send = SendRequest.model_validate(
        {
            "notification_id": f"n-{uuid.uuid4()}",
            "account_id": ACCOUNT,
            "app_id": APP,
            "to": {"contact_ids": ["ana"]},
            "notification": {
                "default": {"title": "Your order shipped"},
                "es": {"title": "Tu pedido salió"},
                "pt-br": {"title": "Seu pedido saiu"},
            },
        }
    )
    await publish(
        settings, topics.SEND_REQUESTS, topics.notification_key(send.notification_id), send
    )
    assert (await finished(db, send))["counters"]["sent"] == 3
    (fcm,) = emulators.fcm.controls.records()
    assert fcm.payload["message"]["notification"] == {"title": "Tu pedido salió"}
    (apns,) = emulators.apns.controls.records()
    assert apns.payload["aps"]["alert"] == {"title": "Seu pedido saiu"}
    (webpush,) = emulators.webpush.controls.records()
    assert webpush.payload == {"notification": {"title": "Your order shipped"}}


@pytest.mark.usefixtures("pipeline")
async def test_throttled_and_unavailable_answers_are_retried_then_delivered(
    settings: Settings, db: AsyncDatabase[Document], emulators: Emulators
) -> None:
    await sandbox_app(db)
    await store_devices(
        db, [device(APNS_TOKEN, "ios", "apns"), device("fcm-token-ana", "android", "fcm")]
    )
    # APNs throttles the first send, FCM is unavailable for it.
    emulators.apns.controls.fail(429, count=1, retry_after=1)
    emulators.fcm.controls.fail(503, count=1)
    send = await send_to_ana(settings)
    notification = await finished(db, send)
    counters = notification["counters"]
    assert (counters["sent"], counters["failed"]) == (2, 0)
    assert [r.status for r in emulators.apns.controls.records()] == [429, 200]
    assert [r.status for r in emulators.fcm.controls.records()] == [503, 200]


@pytest.mark.usefixtures("pipeline")
async def test_a_provider_that_always_fails_dead_letters_the_job(
    settings: Settings, db: AsyncDatabase[Document], emulators: Emulators
) -> None:
    await sandbox_app(db)
    await store_devices(db, [device(APNS_TOKEN, "ios", "apns")])
    emulators.apns.controls.fail(503)
    send = await send_to_ana(settings)
    notification = await finished(db, send)
    assert (notification["counters"]["sent"], notification["counters"]["failed"]) == (0, 1)
    assert len(emulators.apns.controls.records()) == 3  # PUSHLINE_SEND_ATTEMPTS
    letter = await read(
        settings, topics.DLQ, lambda m: isinstance(m, DeadLetter) and m.app_id == APP
    )
    assert isinstance(letter, DeadLetter)
    assert (letter.reason, letter.attempts, letter.replayable) == ("ServiceUnavailable", 3, True)
    device_now = await db.devices.find_one({"token": APNS_TOKEN})
    assert device_now is not None
    assert device_now["status"] == "active"


@pytest.mark.usefixtures("pipeline")
async def test_masiv_send_to_list_reaches_the_listed_devices(
    db: AsyncDatabase[Document], emulators: Emulators, ingest: httpx.AsyncClient
) -> None:
    await sandbox_app(db)
    await db.apps.update_one({"_id": APP}, {"$set": {"package_names": ["com.empresa.miapp"]}})
    account, api_key = await Accounts(db).create("Empresa", ACCOUNT)
    subscription = emulators.webpush.subscribe()
    await store_devices(
        db,
        [
            device("fcm-by-phone", "android", "fcm", cellphone="5713140000000"),
            device(APNS_TOKEN, "ios", "apns", email="usuario1@dominio.com"),
            # Web is not among deviceTypesToSend.
            device(
                subscription["endpoint"],
                "web",
                "webpush",
                subscription=subscription,
                email="usuario2@dominio.com",
            ),
            device("fcm-raw-registered", "android", "fcm"),
        ],
    )
    body = {
        "tokens": ["fcm-raw-registered", "fcm-raw-unknown"],
        "tokensByAssociation": {
            "appId": "com.empresa.miapp",
            "deviceTypesToSend": ["ANDROID", "IOS"],
            "cellphones ": ["5713140000000"],
            "emails": ["usuario1@dominio.com", "usuario2@dominio.com"],
        },
        "notification": {"title": "Mensaje para lista", "message": "Hola"},
        "data": {"Campaña": "Créditos nuevos"},
    }
    response = await ingest.post(
        "/v1/notification/sendToList", json=body, headers={"Authorization": f"Bearer {api_key}"}
    )
    assert response.status_code == 200, response.text

    async def delivered() -> bool:
        fcm = {r.payload["message"].get("token") for r in emulators.fcm.controls.records()}
        return len(fcm) == 3 and len(emulators.apns.controls.records()) == 1

    await eventually(delivered, within=60)
    fcm = {r.payload["message"].get("token") for r in emulators.fcm.controls.records()}
    assert fcm == {"fcm-by-phone", "fcm-raw-registered", "fcm-raw-unknown"}
    assert emulators.webpush.controls.records() == []
    (apns,) = emulators.apns.controls.records()
    assert apns.payload["Campaña"] == "Créditos nuevos"
    assert account.id == ACCOUNT


@pytest.mark.usefixtures("pipeline")
async def test_ten_thousand_devices_complete_with_exact_counters(
    settings: Settings, db: AsyncDatabase[Document], emulators: Emulators
) -> None:
    await sandbox_app(db)
    tokens = [f"{i:064x}" for i in range(10_000)]
    await store_devices(db, [device(token, "ios", "apns") for token in tokens])
    send = await send_to_ana(settings)
    notification = await finished(db, send, within=240)
    counters = notification["counters"]
    assert (counters["targeted"], counters["sent"], counters["failed"]) == (10_000, 10_000, 0)
    assert notification["by_platform"]["ios"] == {"targeted": 10_000, "sent": 10_000}
    assert {r.target for r in emulators.apns.controls.records()} == set(tokens)


@pytest.mark.usefixtures("pipeline")
async def test_every_invalid_token_answer_invalidates_and_a_bad_message_does_not(
    settings: Settings, db: AsyncDatabase[Document], emulators: Emulators
) -> None:
    await sandbox_app(db)
    gone_sub = emulators.webpush.subscribe()
    apns_gone, apns_bad, apns_back = "cd" * 32, "ef" * 32, "a1" * 32
    # Registered well before Apple's answer: marked gone in the same millisecond as its
    # registration, the device would count as registered again since.
    an_hour_ago = utc_now() - timedelta(hours=1)
    await store_devices(
        db,
        [
            device(apns_gone, "ios", "apns", registered_at=an_hour_ago),
            device(apns_bad, "ios", "apns"),
            device(apns_back, "ios", "apns"),
            device("fcm-invalid", "android", "fcm"),
            device(gone_sub["endpoint"], "web", "webpush", subscription=gone_sub),
            device("fcm-fine", "android", "fcm"),
        ],
    )
    emulators.apns.controls.mark([apns_gone], TokenState.UNREGISTERED)
    emulators.apns.controls.mark([apns_bad], TokenState.INVALID)
    # Apple says this token died a minute ago; it was registered again since.
    a_minute_ago = int(utc_now().timestamp() * 1000) - 60_000
    emulators.apns.controls.mark([apns_back], TokenState.UNREGISTERED, at_ms=a_minute_ago)
    emulators.fcm.controls.mark(["fcm-invalid"], TokenState.INVALID)
    emulators.webpush.controls.mark([gone_sub["endpoint"]], TokenState.UNREGISTERED)
    send = await send_to_ana(settings)
    notification = await finished(db, send)
    assert (notification["counters"]["invalid"], notification["counters"]["sent"]) == (5, 1)
    reasons = {
        d["token"]: (d["status"], d.get("invalid_reason")) async for d in db.devices.find({})
    }
    assert reasons == {
        apns_gone: ("invalid", "Unregistered"),
        apns_bad: ("invalid", "BadDeviceToken"),
        apns_back: ("active", None),
        "fcm-invalid": ("invalid", "INVALID_ARGUMENT"),
        gone_sub["endpoint"]: ("invalid", "410"),
        "fcm-fine": ("active", None),
    }

    # A message FCM refuses (a reserved data key, published straight on Kafka past the
    # ingest's check) fails the send and leaves the device active.
    bad = SendRequest(
        notification_id=f"n-{uuid.uuid4()}",
        account_id=ACCOUNT,
        app_id=APP,
        to=Audience(contact_ids=["ana"]),
        notification=Content(title="x"),
        data={"from": "me"},
    )
    await publish(settings, topics.SEND_REQUESTS, topics.notification_key(bad.notification_id), bad)
    refused = await finished(db, bad)
    counters = refused["counters"]
    # fcm-fine fails on the message; apns_back is still answered Unregistered (old stamp).
    assert (counters["failed"], counters["invalid"], counters["sent"]) == (1, 1, 0)
    fine = await db.devices.find_one({"token": "fcm-fine"})
    assert fine is not None
    assert fine["status"] == "active"
