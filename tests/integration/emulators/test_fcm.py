from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import firebase_admin
import pytest
from firebase_admin import messaging

from services.emulators.fcm import FCMEmulator
from services.emulators.runner import EmulatorThread
from services.emulators.state import TokenState
from tests.integration.emulators.firebase import close_http_client, initialize


@pytest.fixture
def fcm() -> Iterator[FCMEmulator]:
    emulator = FCMEmulator(project_id="demo-project")
    with EmulatorThread(emulator):
        yield emulator


@pytest.fixture
def firebase(fcm: FCMEmulator) -> Iterator[firebase_admin.App]:
    app = initialize(fcm)
    yield app
    firebase_admin.delete_app(app)


@pytest.fixture
async def app(firebase: firebase_admin.App) -> AsyncIterator[firebase_admin.App]:
    yield firebase
    await close_http_client(firebase)


async def test_a_message_is_delivered_and_recorded(
    fcm: FCMEmulator, app: firebase_admin.App
) -> None:
    message = messaging.Message(
        fid="device-1",
        notification=messaging.Notification(title="Hi", body="there"),
        data={"k": "v"},
    )
    batch = await messaging.send_each_async([message], app=app)
    assert batch.success_count == 1
    name = batch.responses[0].message_id
    assert name.startswith("projects/demo-project/messages/0:")
    (record,) = fcm.controls.records()
    assert record.status == 200
    assert record.target == "device-1"
    assert record.payload == {
        "message": {
            "fid": "device-1",
            "notification": {"title": "Hi", "body": "there"},
            "data": {"k": "v"},
        }
    }


async def test_unregistered_token(fcm: FCMEmulator, app: firebase_admin.App) -> None:
    fcm.controls.mark(["gone"], TokenState.UNREGISTERED)
    batch = await messaging.send_each_async([messaging.Message(fid="gone")], app=app)
    assert isinstance(batch.responses[0].exception, messaging.UnregisteredError)
