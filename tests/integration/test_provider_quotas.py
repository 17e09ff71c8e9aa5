"""The provider quota governor with the real processes: two senders share one budget of
the FCM emulator's project, and a 429 with Retry-After that one of them gets pauses both."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core import topics
from services.core.buckets import LEASE_SECONDS
from services.core.events import Audience, Content, SendRequest
from services.core.settings import Settings
from services.core.store.client import Document
from services.sender.dispatch import CALL_SIZE
from tests.integration.kafka_io import eventually, publish
from tests.integration.pipeline import ACCOUNT, APP, Emulators, Pipeline, device, finished
from tests.integration.pipeline import sandbox_app as create_sandbox_app

pytestmark = pytest.mark.integration

# Sends a second the two senders share, and the devices of the send: ten seconds' worth.
BUDGET = 20.0
DEVICES = 200
RETRY_AFTER = 3
SENDERS = ("sender-1", "sender-2")


@pytest.fixture
async def pipeline(
    child_env: dict[str, str], emulators: Emulators
) -> AsyncIterator[tuple[Pipeline, str]]:
    """Resolver, feedback and two senders on the FCM emulator's project, held to BUDGET;
    with the project's id."""
    assert emulators.sandbox.fcm is not None
    project = emulators.sandbox.fcm.credentials.project_id
    quotas = json.dumps({f"fcm:{project}": BUDGET})
    running = Pipeline({**child_env, **emulators.env, "PUSHLINE_PROVIDER_QUOTAS": quotas})
    try:
        for name in ("resolver", "feedback", *SENDERS):
            await running.start(name, name.partition("-")[0])
        yield running, project
    finally:
        running.close()


async def send_to(settings: Settings, audience: Audience) -> SendRequest:
    send = SendRequest(
        notification_id=f"n-{uuid.uuid4()}",
        account_id=ACCOUNT,
        app_id=APP,
        to=audience,
        notification=Content(title="Rebajas", body="Para todos"),
    )
    await publish(
        settings, topics.SEND_REQUESTS, topics.notification_key(send.notification_id), send
    )
    return send


def sample(metrics: str, name: str, project: str) -> float:
    prefix = f'{name}{{provider="fcm",scope="{project}"}} '
    found = [line for line in metrics.splitlines() if line.startswith(prefix)]
    return float(found[0].split()[-1]) if found else 0.0


async def test_two_senders_share_a_projects_budget_and_pause_together_on_a_429(
    settings: Settings,
    db: AsyncDatabase[Document],
    pipeline: tuple[Pipeline, str],
    emulators: Emulators,
) -> None:
    running, project = pipeline
    await create_sandbox_app(db)
    await db.devices.insert_many(
        [device(f"fcm-token-{index:04d}", "android", "fcm") for index in range(DEVICES)]
    )
    controls = emulators.fcm.controls
    # A first small send gives each sender its access token and connection: what it then
    # sends is not held up on the way, as it is at first.
    warm_up = await send_to(settings, Audience(tokens=[f"fcm-token-{n:04d}" for n in range(20)]))
    await finished(db, warm_up, within=120)
    controls.clear_records()
    send = await send_to(settings, Audience(all=True))

    async def under_way() -> bool:
        return len(controls.records()) >= 3 * BUDGET

    await eventually(under_way, within=90)
    # FCM says the project is over its quota, once, for RETRY_AFTER seconds.
    controls.fail(429, count=1, retry_after=RETRY_AFTER)
    done = await finished(db, send, within=120)
    assert done["counters"]["sent"] == DEVICES

    records = controls.records()
    times = sorted(r.received_at for r in records if r.status == 200)
    assert len(times) == DEVICES
    [throttled] = [r.received_at for r in records if r.status == 429]
    # The budget's bound: its burst (a second's worth), its rate over time, and a lease
    # (a tenth of a second's tokens, at least a call's) per sender beyond it.
    slack = len(SENDERS) * max(BUDGET * LEASE_SECONDS, CALL_SIZE)
    for window in (1.0, 3.0):
        most = max(
            sum(1 for t in times[index:] if t < start + window) for index, start in enumerate(times)
        )
        assert most <= BUDGET + BUDGET * window + slack, (window, most)
    took = times[-1] - times[0]
    # At the budget, with a margin for the pause's refill and the leases.
    assert took >= (DEVICES - BUDGET) / BUDGET * 0.9, took
    # Nothing reached the project during the pause, once the other sender had read it
    # (within a second), until Retry-After was over.
    during = [t for t in times if throttled + 1.2 < t < throttled + RETRY_AFTER - 0.1]
    assert during == []
    assert any(t >= throttled + RETRY_AFTER for t in times)

    used = throttled_sends = pauses = 0.0
    async with httpx.AsyncClient() as client:
        for name in SENDERS:
            port = running.ports[name]
            metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            assert sample(metrics, "pushline_provider_quota_budget", project) == BUDGET
            # Both took part.
            assert sample(metrics, "pushline_provider_quota_used_total", project) > 0, name
            used += sample(metrics, "pushline_provider_quota_used_total", project)
            throttled_sends += sample(metrics, "pushline_provider_quota_throttled_total", project)
            pauses += sample(metrics, "pushline_provider_quota_pauses_total", project)
    # Every call took the budget (the warm-up's too), the retry of the throttled job too.
    assert used >= 20 + DEVICES + 1
    assert throttled_sends > 0
    assert pauses == 1
