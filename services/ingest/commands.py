"""The registration commands every dialect builds for `push.registrations`, and their key."""

from __future__ import annotations

import uuid

from services.core import topics
from services.core.events import (
    Callback,
    CleanupDevices,
    RegisterDevice,
    UpdateDevice,
    WebPushSubscription,
)
from services.core.fields import Platform, TagValue
from services.core.store.apps import App
from services.core.tokens import hash_token

Command = RegisterDevice | CleanupDevices | UpdateDevice


def new_request_id() -> str:
    """A registration request id (a GUID, as seed 001 shows them)."""
    return str(uuid.uuid4())


def register(
    app: App,
    *,
    source: str,
    platform: Platform,
    token: str,
    subscription: WebPushSubscription | None = None,
    contact_id: str | None = None,
    cellphone: str | None = None,
    email: str | None = None,
    track: bool = False,
    callback: Callback | None = None,
    request_id: str | None = None,
    tags: dict[str, TagValue] | None = None,
    language: str | None = None,
) -> RegisterDevice:
    """A RegisterDevice command for the app; for a Web Push subscription the token is its
    endpoint."""
    return RegisterDevice.model_validate(
        {
            "request_id": request_id or new_request_id(),
            "account_id": app.account_id,
            "app_id": app.id,
            "platform": platform,
            "token": subscription.endpoint if subscription is not None else token,
            "subscription": subscription,
            "contact_id": contact_id,
            "cellphone": cellphone,
            "email": email,
            "verify": app.settings.verify_on_register,
            "track": track,
            "callback": callback,
            "source": source,
            "tags": tags,
            "language": language,
        }
    )


def cleanup(app: App, *, contact_id: str | None, token: str | None) -> CleanupDevices:
    """A CleanupDevices command for the app: one token, or every device of the contact."""
    return CleanupDevices(
        request_id=new_request_id(),
        account_id=app.account_id,
        app_id=app.id,
        contact_id=contact_id,
        token=token,
    )


def update(
    app: App,
    *,
    token: str,
    tags: dict[str, TagValue],
    removed_tags: list[str],
    language: str | None,
    remove_language: bool,
) -> UpdateDevice:
    """An UpdateDevice command for the app's device with this token."""
    return UpdateDevice(
        request_id=new_request_id(),
        account_id=app.account_id,
        app_id=app.id,
        token=token,
        tags=tags,
        removed_tags=removed_tags,
        language=language,
        remove_language=remove_language,
    )


def command_key(command: Command) -> bytes:
    """The partition key: the device's `{app_id}:{token_hash}`.

    A contact-wide cleanup names no token; it is keyed by the hash of the contact id, so all
    cleanups of one contact stay in order.
    """
    subject = command.token
    if subject is None:
        assert isinstance(command, CleanupDevices)
        subject = f"contact:{command.contact_id}"
    return topics.device_key(command.app_id, hash_token(subject))
