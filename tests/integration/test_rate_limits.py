"""Rate limits with the real processes: two ingest processes draw on one bucket of an
account, and a resolver paces one tenant's large fan-out so that another tenant's small
send, issued after it started, is done before it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core import topics
from services.core.events import Audience, Content, SendRequest, utc_now
from services.core.settings import Settings
from services.core.store.client import Document
from services.core.store.devices import device_id
from services.core.store.limits import AccountLimits, Limits
from services.core.tokens import hash_token
from tests.contract.conftest import MASTER_KEY, TenantFactory
from tests.dialects import problem_json
from tests.integration import processes
from tests.integration.kafka_io import eventually, publish
from tests.integration.pipeline import (
    ACCOUNT,
    APP,
    Pipeline,
    device,
    finished,
    sandbox_app,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def ingests(child_env: dict[str, str]) -> AsyncIterator[list[str]]:
    """Two `pushline ingest` processes on one store: their base URLs."""
    started: list[processes.Process] = []
    urls = []
    try:
        for _ in range(2):
            port = processes.free_port()
            env = {
                **child_env,
                "PUSHLINE_INGEST_PORT": str(port),
                "PUSHLINE_MASTER_KEY": MASTER_KEY,
            }
            started.append(processes.Process(["services.cli", "ingest"], env))
            urls.append(f"http://127.0.0.1:{port}")
        for process, url in zip(started, urls, strict=True):
            await process.wait_ready(f"{url}/readyz")
        yield urls
    finally:
        for process in started:
            process.close()


async def test_two_ingest_processes_share_an_accounts_bucket(
    ingests: list[str], db: AsyncDatabase[Document]
) -> None:
    tenant = await TenantFactory(db).make()
    rate, burst = 2.0, 10
    await AccountLimits(db).set(
        tenant.account_id, Limits(requests_per_second=rate, requests_burst=burst)
    )
    headers = {"Authorization": f"Bearer {tenant.api_key}"}
    async with httpx.AsyncClient(timeout=30.0) as client:

        async def call(url: str) -> tuple[str, httpx.Response]:
            return url, await client.get(f"{url}/v1/apps", headers=headers)

        started = time.monotonic()
        answers = await asyncio.gather(*(call(ingests[n % 2]) for n in range(40)))
        took = time.monotonic() - started

    taken = [url for url, r in answers if r.status_code == 200]
    refused = [(url, r) for url, r in answers if r.status_code == 429]
    assert len(taken) + len(refused) == 40, {r.status_code for _, r in answers}
    # Each process alone would have taken a burst of its own, 20 between them: one
    # bucket gives the burst and its rate meanwhile, plus at most a lease (of one token
    # at this rate) per process.
    assert burst <= len(taken) <= burst + rate * took + 2, (len(taken), took)
    assert {url for url, _ in refused} == set(ingests)
    for _, response in refused:
        problem_json(response, "/v1/apps")
        assert int(response.headers["Retry-After"]) >= 1
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"{ingests[0]}/metrics")).text
    assert 'pushline_throttled_requests_total{limit="requests"}' in metrics


# Devices of tenant A's campaign, and the notifications per second A is held to: a fan-out
# of ten seconds at least.
CAMPAIGN = 3000
PACE = 300.0
OTHER_ACCOUNT, OTHER_APP = "acc-other", "other-app"


async def test_a_small_send_during_a_paced_fan_out_of_another_tenant_finishes_first(
    settings: Settings, db: AsyncDatabase[Document], pipeline: Pipeline
) -> None:
    await sandbox_app(db)
    now = utc_now()
    await db.apps.insert_one(
        {
            "_id": OTHER_APP,
            "account_id": OTHER_ACCOUNT,
            "name": "Other",
            "sandbox": True,
            "created": now,
            "updated": now,
        }
    )
    for account in (ACCOUNT, OTHER_ACCOUNT):
        await db.accounts.insert_one(
            {"_id": account, "name": account, "api_key_hashes": [], "created": now}
        )
    await AccountLimits(db).set(ACCOUNT, Limits(notifications_per_second=PACE))
    await db.devices.insert_many(
        [device(f"{index:064x}", "ios", "apns") for index in range(CAMPAIGN)]
    )
    token = "ee" * 32
    await db.devices.insert_one(
        device(
            token,
            "ios",
            "apns",
            _id=device_id(OTHER_APP, hash_token(token)),
            app_id=OTHER_APP,
            account_id=OTHER_ACCOUNT,
        )
    )

    campaign = SendRequest(
        notification_id=f"n-{uuid.uuid4()}",
        account_id=ACCOUNT,
        app_id=APP,
        to=Audience(all=True),
        notification=Content(title="Rebajas", body="Para todos"),
    )
    started = time.monotonic()
    await publish(
        settings, topics.SEND_REQUESTS, topics.notification_key(campaign.notification_id), campaign
    )

    async def under_way() -> Document | None:
        doc = await db.notifications.find_one({"_id": campaign.notification_id})
        return doc if doc and (doc.get("fanout_checkpoint") or {}).get("after") else None

    # A checkpoint every 1,000 jobs: a third of the campaign is out.
    await eventually(under_way, within=60)
    order = SendRequest(
        notification_id=f"n-{uuid.uuid4()}",
        account_id=OTHER_ACCOUNT,
        app_id=OTHER_APP,
        to=Audience(tokens=[token]),
        notification=Content(title="Tu pedido", body="Va en camino"),
    )
    await publish(
        settings, topics.SEND_REQUESTS, topics.notification_key(order.notification_id), order
    )
    done = await finished(db, order, within=60)
    assert done["counters"]["sent"] == 1
    meanwhile = await db.notifications.find_one({"_id": campaign.notification_id})
    assert meanwhile is not None
    assert meanwhile["state"] != "done"
    assert not meanwhile.get("fanout_done"), "the campaign's fan-out ended first"

    whole = await finished(db, campaign, within=120)
    took = time.monotonic() - started
    assert whole["counters"]["sent"] == CAMPAIGN
    # Paced: a second's burst, then PACE a second.
    assert took >= (CAMPAIGN - PACE) / PACE * 0.9, took
    port = pipeline.ports["resolver"]
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    paced = next(
        line
        for line in metrics.splitlines()
        if line.startswith("pushline_fanout_paced_seconds_total")
    )
    assert float(paced.split()[-1]) > 0
