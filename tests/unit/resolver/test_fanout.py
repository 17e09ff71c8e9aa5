"""The job a device gets from a send request."""

from __future__ import annotations

from services.core.events import Audience, Content, SendRequest
from services.core.store.client import Document
from services.resolver.fanout import job_for


def _device(language: str | None) -> Document:
    device: Document = {
        "_id": "app:t",
        "account_id": "acc",
        "app_id": "app",
        "platform": "ios",
        "provider": "apns",
        "token": "t",
        "token_hash": "h",
    }
    if language is not None:
        device["language"] = language
    return device


def test_each_device_gets_the_content_of_its_language() -> None:
    send = SendRequest(
        notification_id="n",
        account_id="acc",
        app_id="app",
        to=Audience(all=True),
        notification=Content(title="Hello"),
        localized={"pt-br": Content(title="Olá"), "es": Content(title="Hola")},
    )
    titles = [job_for(send, _device(lang)).notification.title for lang in ("pt-br", "es-mx", "de")]
    assert titles == ["Olá", "Hola", "Hello"]
    assert job_for(send, _device(None)).notification == Content(title="Hello")
