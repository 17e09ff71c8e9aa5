"""The provider quota governor: a sender's dispatcher waits for its scope off the wire
and records a 429's pause (in the test process, on the real store, the provider scripted);
and, with the real processes, two senders share one budget of the FCM emulator's project,
and a 429 with Retry-After that one of them gets pauses both."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core import topics
from services.core.buckets import LEASE_SECONDS
from services.core.events import Audience, Content, PushJob, SendRequest
from services.core.providers.base import Provider, Result
from services.core.providers.classify import ErrorClass
from services.core.settings import Settings
from services.core.store.client import Document
from services.core.store.pauses import ProviderPauses
from services.core.tokens import hash_token
from services.sender.dispatch import CALL_SIZE
from services.sender.governor import CHECK_SECONDS, Governor
from tests.integration.dispatching import Harness
from tests.integration.kafka_io import eventually, publish
from tests.integration.pipeline import ACCOUNT, APP, Emulators, Pipeline, device, finished
from tests.integration.pipeline import sandbox_app as create_sandbox_app

pytestmark = pytest.mark.integration


class Project(Provider):
    """An FCM project `proj`: answers each job with the next result scripted for it."""

    name = "fcm"

    def __init__(self, script: dict[str, list[Result]]) -> None:
        self.script = script
        self.calls: list[tuple[float, list[str]]] = []

    def quota_scope(self, job: PushJob) -> str:
        return "proj"

    async def send(self, jobs: Sequence[PushJob]) -> list[Result]:
        self.calls.append((time.time(), [job.token for job in jobs]))
        return [self.script[job.token].pop(0) for job in jobs]


def job(token: str) -> PushJob:
    return PushJob(
        notification_id="n1",
        account_id="acc",
        app_id="app",
        provider="fcm",
        platform="android",
        token=token,
        token_hash=hash_token(token),
    )


async def test_a_call_waiting_for_its_scope_is_off_the_wire_and_ends_with_a_revocation(
    db: AsyncDatabase[Document],
) -> None:
    provider = Project({"t1": [Result.success("m1")]})
    harness = Harness(db, provider)
    await ProviderPauses(db).pause("fcm:proj", time.time() + 60)
    await harness.start(job("t1"), generation=1)
    await asyncio.sleep(0.5)
    # Waiting: no call, and nothing noted on the wire for the next owner to call repeated.
    assert provider.calls == []
    assert await db.marks.count_documents({}) == 0
    started = time.monotonic()
    await harness.dispatcher.revoke(1)
    await harness.dispatcher.drain()
    assert time.monotonic() - started < CHECK_SECONDS + 1
    assert provider.calls == []
    assert harness.acked == []


async def test_a_429_pauses_the_scope_for_every_sender_until_its_retry_after(
    db: AsyncDatabase[Document],
) -> None:
    throttled = Result.failure(
        "fcm", ErrorClass.QUOTA, reason="QUOTA_EXCEEDED", status=429, retry_after=2.0
    )
    provider = Project({"t1": [throttled, Result.success("m1")], "t2": [Result.success("m2")]})
    harness = Harness(db, provider, quotas={"fcm:proj": 100.0})
    await harness.run(job("t1"))
    paused_until = await ProviderPauses(db).until("fcm:proj")
    [(first, _), (retried, _)] = provider.calls
    assert first + 1.9 <= paused_until <= first + 2.5
    assert retried >= paused_until
    # Another sender (another governor, on the same store) waits for the pause as well.
    other = Harness(db, provider, quotas={"fcm:proj": 100.0})
    until = time.time() + 1.5
    await ProviderPauses(db).pause("fcm:proj", until)
    await other.run(job("t2"))
    assert provider.calls[-1][0] >= until
    assert sorted(harness.acked + other.acked) == ["t1", "t2"]


async def test_a_senders_transactional_call_takes_the_scopes_tokens_before_its_bulk_calls(
    db: AsyncDatabase[Document],
) -> None:
    governor = Governor(db, {"fcm:proj": 10.0})
    provider = Project({})
    transactional = [job(f"t{i}") for i in range(10)]
    bulk = [j.model_copy(update={"lane": "bulk"}) for j in transactional]
    # The bucket's second of budget is spent: each call below waits a second for its own.
    assert await governor.admit(provider, bulk, lambda: False)
    admitted: list[str] = []

    async def admit(lane: str, jobs: list[PushJob]) -> None:
        assert await governor.admit(provider, jobs, lambda: False)
        admitted.append(lane)

    waiting_bulk = [asyncio.create_task(admit("bulk", bulk)) for _ in range(3)]
    await asyncio.sleep(0.2)
    await admit("transactional", transactional)
    await asyncio.gather(*waiting_bulk)
    assert admitted == ["transactional", "bulk", "bulk", "bulk"]


async def test_another_senders_transactional_call_finds_budget_the_bulk_calls_left(
    db: AsyncDatabase[Document],
) -> None:
    quotas = {"fcm:proj": 10.0}
    bulk_sender, other_sender = Governor(db, quotas), Governor(db, quotas)
    provider = Project({})
    bulk = [job(f"b{i}").model_copy(update={"lane": "bulk"}) for i in range(10)]

    def at_once() -> bool:
        # Asked whether to give up as soon as the call would wait: admitted only at once.
        return True

    # A bulk call of a second's budget takes nine tenths of it, and would wait for the rest
    # (it gives up here)...
    assert not await bulk_sender.admit(provider, bulk, at_once)
    # ...which another sender's transactional send finds at once.
    assert await other_sender.admit(provider, [job("t1")], at_once)


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
