"""A provider added without editing Pushline (`tests/integration/dummy.py`, installed by
`PUSHLINE_EXTRA_PROVIDERS`) is routed end to end: a registration of its device is checked
on its job topic and stored with it, and a send to the device's contact is fanned out to
its job topic, sent by its client and counted by feedback.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import SecretStr
from pymongo.asynchronous.database import AsyncDatabase

from services.core import topics
from services.core.events import (
    PushJob,
    RegisterDevice,
)
from services.core.providers import registry
from services.core.secrets import Vault
from services.core.settings import Settings
from services.core.store.accounts import Accounts
from services.core.store.apps import Apps, AppSettings, NewApp
from services.core.store.client import Document
from services.core.store.indexes import ensure_indexes
from services.core.tokens import hash_token
from tests.integration.kafka_io import eventually, publish, read
from tests.integration.pipeline import Pipeline, finished, running_pipeline, send_to_ana
from tests.integration.webhook_receiver import Receiver, webhook_receiver

pytestmark = pytest.mark.integration

EXTRA = {"dummy": "tests.integration.dummy:DummyProvider"}
MASTER_KEY = secrets.token_urlsafe(32)
ACCOUNT = "acc-dummy"
APP = "app-dummy"


@pytest.fixture
def installed() -> Iterator[None]:
    """This process serves the dummy too (its job topic), as the workers do."""
    registry.install(EXTRA)
    try:
        yield
    finally:
        registry.install({})


@pytest.fixture
async def service() -> AsyncIterator[Receiver]:
    async with webhook_receiver() as receiver:
        yield receiver


@pytest.fixture
async def pipeline(
    child_env: dict[str, str], service: Receiver, installed: None
) -> AsyncIterator[Pipeline]:
    async with running_pipeline(
        {
            **child_env,
            "PUSHLINE_EXTRA_PROVIDERS": ",".join(f"{k}={v}" for k, v in EXTRA.items()),
            "PUSHLINE_DUMMY_ENDPOINT": service.base_url,
            "PUSHLINE_MASTER_KEY": MASTER_KEY,
        }
    ) as running:
        yield running


async def dummy_app(db: AsyncDatabase[Document]) -> None:
    """An app whose only credentials are the dummy's (in the slot its registration gives
    apps), checking devices as they register."""
    await ensure_indexes(db)
    await Accounts(db).create("Acme", ACCOUNT)
    app = await Apps(db, Vault(SecretStr(MASTER_KEY))).create(
        NewApp(
            account_id=ACCOUNT,
            id=APP,
            name="Dummy",
            settings=AppSettings(verify_on_register=True),
            dummy={"account": "acme", "secret": "s3cret"},
        )
    )
    assert app.configured == {"dummy"}
    assert app.providers.model_dump() == {
        "fcm": None,
        "apns": None,
        "webpush": None,
        "dummy": {"account": "acme"},
    }


@pytest.mark.usefixtures("pipeline")
async def test_a_provider_added_by_configuration_is_routed_end_to_end(
    settings: Settings, db: AsyncDatabase[Document], service: Receiver
) -> None:
    await dummy_app(db)
    token = f"dummy:{uuid.uuid4().hex}"
    command = RegisterDevice(
        request_id=f"req-{uuid.uuid4()}",
        account_id=ACCOUNT,
        app_id=APP,
        platform="android",
        token=token,
        contact_id="ana",
        track=True,
    )
    await publish(
        settings, topics.REGISTRATIONS, topics.device_key(APP, hash_token(token)), command
    )

    async def registered() -> Document | None:
        return await db.devices.find_one({"token": token, "status": "active"})

    device = await eventually(registered, within=60)
    assert device["provider"] == "dummy"

    send = await send_to_ana(settings, ACCOUNT, APP)
    notification = await finished(db, send, within=60)
    assert (notification["counters"]["targeted"], notification["counters"]["sent"]) == (1, 1)

    job = await read(
        settings,
        topics.JOB_TOPICS["dummy"],
        lambda m: isinstance(m, PushJob) and m.notification_id == send.notification_id,
    )
    assert isinstance(job, PushJob)
    assert (job.provider, job.token) == ("dummy", token)
    assert [(call.path, call.body["kind"], call.body["token"]) for call in service.calls] == [
        ("/send", "verify", token),
        ("/send", "send", token),
    ]
    assert service.calls[1].body == {
        "account": "acme",
        "kind": "send",
        "token": token,
        "payload": {
            "notification": {"title": "Hola Ana", "body": "Tu pedido va en camino"},
            "data": {"order": "42"},
        },
    }
