"""Credential health through the real pipeline: the senders check each app's credentials
against the APNs emulator (HTTP/2, TLS, JWT) every PUSHLINE_CREDENTIALS_CHECK_INTERVAL,
record the verdict on the app and export it as `pushline_app_credentials_valid`; a send
for the app whose key APNs refuses is dead-lettered at its first answer, not retried."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from pymongo.asynchronous.database import AsyncDatabase

from services.core import topics
from services.core.events import DeadLetter
from services.core.providers.apns import CHECK_TOKEN
from services.core.secrets import Vault
from services.core.settings import Settings
from services.core.store.accounts import Accounts
from services.core.store.apps import Apps, NewApp
from services.core.store.client import Document
from services.core.store.devices import device_id
from services.core.store.indexes import ensure_indexes
from services.core.tokens import hash_token
from tests.contract.conftest import apns_key
from tests.devices import store_devices
from tests.integration.kafka_io import eventually, read
from tests.integration.pipeline import (
    ACCOUNT,
    Emulators,
    Pipeline,
    device,
    finished,
    running_pipeline,
    send_to_ana,
)

pytestmark = pytest.mark.integration

MASTER_KEY = secrets.token_urlsafe(32)
GOOD, BAD = "app-good-key", "app-bad-key"
APNS_TOKEN = "cd" * 32


@pytest.fixture
async def pipeline(child_env: dict[str, str], emulators: Emulators) -> AsyncIterator[Pipeline]:
    async with running_pipeline(
        {
            **child_env,
            **emulators.env,
            "PUSHLINE_MASTER_KEY": MASTER_KEY,
            # The apps' own credentials go to the emulator, as they would go to Apple.
            "PUSHLINE_APNS_ENDPOINT": emulators.apns.url,
            "PUSHLINE_APNS_CA_FILE": str(emulators.apns.tls.ca_file),
            "PUSHLINE_CREDENTIALS_CHECK_INTERVAL": "2s",
            "PUSHLINE_SEND_ATTEMPTS": "3",
            "PUSHLINE_RETRY_BASE_SECONDS": "0.1",
        }
    ) as running:
        yield running


async def apps_with_keys(db: AsyncDatabase[Document], emulators: Emulators) -> None:
    """Two apps of the emulator's team and topic: one with its key, one with a key Apple
    never issued (stored straight, so only the senders' periodic checks judge them)."""
    await ensure_indexes(db)
    await Accounts(db).create("Acme", ACCOUNT)
    apps = Apps(db, Vault(SecretStr(MASTER_KEY)))
    apns = emulators.apns
    for app_id, key in ((GOOD, apns.key_pem), (BAD, apns_key())):
        credentials = {
            "team_id": apns.team_id,
            "key_id": apns.key_id,
            "topic": apns.topics[0],
            "private_key": key,
        }
        await apps.create(NewApp(account_id=ACCOUNT, id=app_id, name=app_id, apns=credentials))


async def status_of(db: AsyncDatabase[Document], app_id: str) -> dict[str, Any] | None:
    app = await db.apps.find_one({"_id": app_id}, {"credentials_status": 1})
    status: dict[str, Any] | None = (app or {}).get("credentials_status", {}).get("apns")
    return status


async def test_a_refused_key_is_invalid_in_the_store_and_the_metric_and_its_sends_dead_letter(
    settings: Settings, db: AsyncDatabase[Document], emulators: Emulators, pipeline: Pipeline
) -> None:
    await apps_with_keys(db, emulators)
    bad = await eventually(lambda: status_of(db, BAD), within=60)
    good = await eventually(lambda: status_of(db, GOOD), within=60)
    assert (bad["valid"], bad["last_error"]) == (False, "InvalidProviderToken (403)")
    assert (good["valid"], good["last_error"]) == (True, None)
    # The emulator answered the checks as APNs does: the JWT is refused, or, once taken,
    # the token that no device has.
    checks = [r for r in emulators.apns.controls.records() if r.target == CHECK_TOKEN]
    assert {r.reason for r in checks} == {"InvalidProviderToken", "BadDeviceToken"}

    metrics_url = f"http://127.0.0.1:{pipeline.ports['sender']}/metrics"

    async def exported() -> str | None:
        async with httpx.AsyncClient() as http:
            text = (await http.get(metrics_url)).text
        return text if f'app="{GOOD}"' in text and f'app="{BAD}"' in text else None

    text = await eventually(exported, within=30)
    assert f'pushline_app_credentials_valid{{app="{BAD}",provider="apns"}} 0.0' in text
    assert f'pushline_app_credentials_valid{{app="{GOOD}",provider="apns"}} 1.0' in text

    # Checked again once the interval has passed.
    async def rechecked() -> dict[str, Any] | None:
        now = await status_of(db, BAD)
        return now if now is not None and now["checked_at"] > bad["checked_at"] else None

    assert (await eventually(rechecked, within=30))["valid"] is False

    # A send for the app APNs refuses: one request, then straight to the dead letters.
    device_key = device_id(BAD, hash_token(APNS_TOKEN))
    await store_devices(
        db, [{**device(APNS_TOKEN, "ios", "apns"), "_id": device_key, "app_id": BAD}]
    )
    send = await send_to_ana(settings, ACCOUNT, BAD)
    notification = await finished(db, send, within=60)
    assert (notification["counters"]["sent"], notification["counters"]["failed"]) == (0, 1)
    letter = await read(
        settings,
        topics.DLQ,
        lambda m: isinstance(m, DeadLetter) and send.notification_id in m.value,
    )
    assert isinstance(letter, DeadLetter)
    assert (letter.reason, letter.attempts, letter.replayable) == (
        "InvalidProviderToken",
        1,
        True,
    )
    sends = [r for r in emulators.apns.controls.records() if r.target == APNS_TOKEN]
    assert [r.reason for r in sends] == ["InvalidProviderToken"]
    device_now = await db.devices.find_one({"_id": device_key})
    assert device_now is not None
    assert device_now["status"] == "active"
