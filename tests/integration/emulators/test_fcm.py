"""The FCM emulator driven by firebase-admin 7.7, the client the sender uses."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import firebase_admin
import httpx
import jwt
import pytest
from firebase_admin import credentials, exceptions, messaging

from services.sandbox.emulators.fcm import FCM_ERROR, JWT_BEARER, FCMEmulator
from services.sandbox.emulators.runner import EmulatorThread
from services.sandbox.emulators.state import TokenState
from tests.integration.emulators.firebase import (
    close_http_client,
    initialize,
    point_messaging_at,
)


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


def _http_body(error: BaseException | None) -> Any:
    assert isinstance(error, exceptions.FirebaseError), error
    assert error.http_response is not None
    return error.http_response.json()


async def test_the_deprecated_token_field_is_accepted_too(
    fcm: FCMEmulator, app: firebase_admin.App
) -> None:
    with pytest.warns(DeprecationWarning, match="Message.token is deprecated"):
        message = messaging.Message(token="registration-token", data={"a": "1"})
    batch = await messaging.send_each_async([message], app=app)
    assert batch.success_count == 1
    assert fcm.controls.records()[0].payload == {
        "message": {"token": "registration-token", "data": {"a": "1"}}
    }


async def test_validate_only_checks_without_delivering(
    fcm: FCMEmulator, app: firebase_admin.App
) -> None:
    fcm.controls.mark(["gone"], TokenState.UNREGISTERED)
    messages = [messaging.Message(fid="ok"), messaging.Message(fid="gone")]
    batch = await messaging.send_each_async(messages, dry_run=True, app=app)
    assert batch.responses[0].message_id == "projects/demo-project/messages/fake_message_id"
    assert isinstance(batch.responses[1].exception, messaging.UnregisteredError)
    assert [r.payload["validate_only"] for r in fcm.controls.records()] == [True, True]


async def test_unregistered_body(fcm: FCMEmulator, app: firebase_admin.App) -> None:
    fcm.controls.mark(["gone"], TokenState.UNREGISTERED)
    batch = await messaging.send_each_async([messaging.Message(fid="gone")], app=app)
    error = batch.responses[0].exception
    assert isinstance(error, messaging.UnregisteredError)
    assert _http_body(error) == {
        "error": {
            "code": 404,
            "message": "Requested entity was not found.",
            "status": "NOT_FOUND",
            "details": [{"@type": FCM_ERROR, "errorCode": "UNREGISTERED"}],
        }
    }


async def test_an_invalid_token_names_the_token_field(
    fcm: FCMEmulator, app: firebase_admin.App
) -> None:
    fcm.controls.mark(["bad"], TokenState.INVALID)
    batch = await messaging.send_each_async([messaging.Message(fid="bad")], app=app)
    error = batch.responses[0].exception
    assert isinstance(error, exceptions.InvalidArgumentError)
    assert str(error) == "The registration token is not a valid FCM registration token"
    body = _http_body(error)["error"]
    assert (body["code"], body["status"]) == (400, "INVALID_ARGUMENT")
    assert body["details"] == [
        {"@type": FCM_ERROR, "errorCode": "INVALID_ARGUMENT"},
        {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [
                {
                    "field": "message.fid",
                    "description": "The registration token is not a valid FCM registration token",
                }
            ],
        },
    ]


async def test_an_invalid_message_does_not_name_the_token(
    fcm: FCMEmulator, app: firebase_admin.App
) -> None:
    message = messaging.Message(fid="fine", data={"k": "x" * 5000})
    batch = await messaging.send_each_async([message], app=app)
    error = batch.responses[0].exception
    assert isinstance(error, exceptions.InvalidArgumentError)
    details = _http_body(error)["error"]["details"]
    fields = [v["field"] for d in details for v in d.get("fieldViolations", [])]
    assert fields == ["message"]


async def test_quota_exceeded_carries_retry_after(
    fcm: FCMEmulator, app: firebase_admin.App
) -> None:
    fcm.controls.fail(429, count=1, retry_after=30)
    batch = await messaging.send_each_async([messaging.Message(fid="a")], app=app)
    error = batch.responses[0].exception
    assert isinstance(error, messaging.QuotaExceededError)
    assert error.http_response.status_code == 429
    assert error.http_response.headers["Retry-After"] == "30"
    assert _http_body(error)["error"]["status"] == "RESOURCE_EXHAUSTED"
    again = await messaging.send_each_async([messaging.Message(fid="a")], app=app)
    assert again.success_count == 1


async def test_unavailable_after_firebase_admins_own_retries(
    fcm: FCMEmulator, app: firebase_admin.App
) -> None:
    # firebase-admin retries a 503 four times itself (about 7 s of backoff).
    fcm.controls.fail(503, count=5)
    batch = await messaging.send_each_async([messaging.Message(fid="a")], app=app)
    error = batch.responses[0].exception
    assert isinstance(error, exceptions.UnavailableError)
    assert _http_body(error)["error"]["details"] == [
        {"@type": FCM_ERROR, "errorCode": "UNAVAILABLE"}
    ]
    assert [r.status for r in fcm.controls.records()] == [503] * 5


async def test_a_503_that_clears_is_retried_by_firebase_admin(
    fcm: FCMEmulator, app: firebase_admin.App
) -> None:
    fcm.controls.fail(503, count=1)
    batch = await messaging.send_each_async([messaging.Message(fid="a")], app=app)
    assert batch.success_count == 1
    assert [r.status for r in fcm.controls.records()] == [503, 200]


@pytest.fixture
def foreign(fcm: FCMEmulator) -> Iterator[firebase_admin.App]:
    """An app whose service account has the same name but another key."""
    account = {**FCMEmulator(project_id="demo-project").service_account()}
    account["token_uri"] = fcm.token_uri
    app = firebase_admin.initialize_app(
        credentials.Certificate(account), name=f"test-{uuid.uuid4().hex}"
    )
    point_messaging_at(app, fcm.url, fcm.project_id)
    yield app
    firebase_admin.delete_app(app)


async def test_a_foreign_service_account_gets_no_token(
    fcm: FCMEmulator, foreign: firebase_admin.App
) -> None:
    try:
        with pytest.raises(exceptions.UnknownError, match="Invalid JWT Signature"):
            await messaging.send_each_async([messaging.Message(fid="a")], app=foreign)
    finally:
        await close_http_client(foreign)
    assert fcm.controls.records() == []


async def test_the_token_endpoint_and_bearer_check(fcm: FCMEmulator) -> None:
    account = fcm.service_account()
    now = int(time.time())
    claims = {
        "iss": account["client_email"],
        "aud": "https://oauth2.googleapis.com/token",
        "scope": "https://www.googleapis.com/auth/firebase.messaging",
        "iat": now,
        "exp": now + 3600,
    }
    send_url = f"{fcm.url}/v1/projects/demo-project/messages:send"
    body = {"message": {"fid": "a"}}
    async with httpx.AsyncClient() as client:
        good = jwt.encode(claims, account["private_key"], "RS256")
        granted = await client.post(
            fcm.token_uri, data={"grant_type": JWT_BEARER, "assertion": good}
        )
        assert granted.status_code == 200
        token = granted.json()["access_token"]
        assert granted.json()["token_type"] == "Bearer"
        sent = await client.post(send_url, json=body, headers={"Authorization": f"Bearer {token}"})
        assert sent.status_code == 200
        # The MAC's last hex digit changed (to "0" it would stay the same one time in 16).
        other = "1" if token[-1] == "0" else "0"
        forged = await client.post(
            send_url, json=body, headers={"Authorization": f"Bearer {token[:-1]}{other}"}
        )
        assert forged.status_code == 401
        assert forged.json()["error"]["status"] == "UNAUTHENTICATED"
        stale = jwt.encode(
            {**claims, "iat": now - 7200, "exp": now - 3600}, account["private_key"], "RS256"
        )
        refused = await client.post(
            fcm.token_uri, data={"grant_type": JWT_BEARER, "assertion": stale}
        )
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_grant"
        other_project = await client.post(
            f"{fcm.url}/v1/projects/other/messages:send",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert other_project.json()["error"]["status"] == "PERMISSION_DENIED"


@pytest.mark.parametrize(
    ("body", "field", "fcm_error"),
    [
        ({"message": {"fid": "a", "colour": "red"}}, "message", False),
        ({"message": {"data": {"k": "v"}}}, "message", True),
        ({"message": {"fid": "a", "data": {"k": 1}}}, "message.data[0].value", False),
        ({"message": {"fid": "a", "data": {"from": "x"}}}, "message.data", True),
        ({"message": {"fid": "a"}, "dry_run": True}, "dry_run", False),
    ],
)
async def test_invalid_messages_are_refused_like_fcm(
    fcm: FCMEmulator, body: dict[str, Any], field: str, fcm_error: bool
) -> None:
    headers = {"Authorization": f"Bearer {fcm.issue_access_token()}"}
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"{fcm.url}/v1/projects/demo-project/messages:send", json=body, headers=headers
        )
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    types = [detail["@type"] for detail in error["details"]]
    assert (FCM_ERROR in types) is fcm_error
    violations = [v for d in error["details"] for v in d.get("fieldViolations", [])]
    assert [v["field"] for v in violations] == [field]
    assert fcm.controls.records()[0].reason == "INVALID_ARGUMENT"


async def test_an_emulator_configured_with_an_existing_service_account() -> None:
    account = FCMEmulator(project_id="existing").service_account()
    account["client_email"] = "sender@existing.iam.gserviceaccount.com"
    account["private_key_id"] = "0123abcd"
    fcm = FCMEmulator.from_service_account(account)
    with EmulatorThread(fcm):
        assert fcm.service_account()["private_key"] == account["private_key"]
        assert fcm.service_account()["client_email"] == account["client_email"]
        now = int(time.time())
        claims = {
            "iss": account["client_email"],
            "aud": "https://oauth2.googleapis.com/token",
            "scope": "https://www.googleapis.com/auth/cloud-platform",
            "iat": now,
            "exp": now + 3600,
        }
        assertion = jwt.encode(claims, account["private_key"], "RS256", headers={"kid": "0123abcd"})
        async with httpx.AsyncClient() as client:
            granted = await client.post(
                fcm.token_uri, data={"grant_type": JWT_BEARER, "assertion": assertion}
            )
            assert granted.status_code == 200
            other_kid = jwt.encode(claims, account["private_key"], "RS256", headers={"kid": "x"})
            refused = await client.post(
                fcm.token_uri, data={"grant_type": JWT_BEARER, "assertion": other_kid}
            )
            assert refused.json() == {
                "error": "invalid_grant",
                "error_description": "Invalid JWT Signature.",
            }
    with pytest.raises(ValueError, match="lacks"):
        FCMEmulator.from_service_account({"project_id": "x"})
