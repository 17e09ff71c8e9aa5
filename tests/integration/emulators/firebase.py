"""firebase-admin pointed at the FCM emulator.

firebase-admin 7.7 reaches into private attributes for two things, both kept here:
- its FCM URL is the private `_fcm_url` of the messaging service, with no setting;
- `delete_app()` closes the service's httpx client with `asyncio.run()`, which fails inside a
  running loop and cannot close connections of a loop that has gone, so the client is closed
  in the test's own loop first.
"""

from __future__ import annotations

import uuid

import firebase_admin
from firebase_admin import credentials, messaging

from services.sandbox.emulators.fcm import FCMEmulator


def point_messaging_at(app: firebase_admin.App, endpoint: str, project_id: str) -> None:
    """Send the app's FCM requests to `endpoint` instead of fcm.googleapis.com.

    If a release moves the attribute the assertion fails here rather than the tests
    silently calling Google.
    """
    service = messaging._get_messaging_service(app)
    assert service._fcm_url == messaging._MessagingService.FCM_URL.format(project_id)
    service._fcm_url = f"{endpoint}/v1/projects/{project_id}/messages:send"


def initialize(fcm: FCMEmulator) -> firebase_admin.App:
    """A firebase-admin app with the emulator's service account, sending to the emulator."""
    certificate = credentials.Certificate(fcm.service_account())
    app = firebase_admin.initialize_app(certificate, name=f"test-{uuid.uuid4().hex}")
    point_messaging_at(app, fcm.url, fcm.project_id)
    return app


async def close_http_client(app: firebase_admin.App) -> None:
    """Close the messaging service's async HTTP client in the running loop."""
    await messaging._get_messaging_service(app)._async_client.aclose()
