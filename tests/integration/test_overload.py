"""Overload: an ingest with far more concurrent clients than it takes answers the rest
503 with Retry-After in each dialect's shape, at once and without growing; a slow provider
slows a sender down without its jobs in hand or its memory growing with the backlog."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from bisect import bisect_left
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core import kafka, topics
from services.core.events import Content, PushJob
from services.core.settings import Settings
from services.core.store.client import Document
from services.core.tokens import hash_token
from services.core.topics import device_key
from services.sender.app import BATCH
from services.sender.dispatch import CALL_SIZE
from tests.contract.conftest import MASTER_KEY, TenantFactory
from tests.dialects import Shape, cij, masiv, problem_json, requests_of, routee
from tests.integration import processes
from tests.integration.kafka_io import publish
from tests.integration.pipeline import Emulators, sandbox_app

pytestmark = pytest.mark.integration

MAX_IN_FLIGHT = 8
CLIENTS = 400


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    assert match is not None
    return int(match.group(1)) / 1024


@dataclass
class Ingest:
    url: str
    process: processes.Process


@pytest.fixture
async def ingest(child_env: dict[str, str]) -> AsyncIterator[Ingest]:
    """`pushline ingest` as a process that takes at most MAX_IN_FLIGHT requests at once."""
    port = processes.free_port()
    env = {
        **child_env,
        "PUSHLINE_INGEST_PORT": str(port),
        "PUSHLINE_MASTER_KEY": MASTER_KEY,
        "PUSHLINE_INGEST_MAX_IN_FLIGHT": str(MAX_IN_FLIGHT),
    }
    process = processes.Process(["services.cli", "ingest"], env)
    url = f"http://127.0.0.1:{port}"
    try:
        await process.wait_ready(f"{url}/readyz")
        yield Ingest(url, process)
    finally:
        process.close()


async def test_an_ingest_past_its_bound_answers_503_with_retry_after_in_each_dialect(
    ingest: Ingest, db: AsyncDatabase[Document]
) -> None:
    tenant = await TenantFactory(db).make()
    before = peak_rss_mib(ingest.process.popen.pid)
    limits = httpx.Limits(max_connections=CLIENTS + 10)
    async with httpx.AsyncClient(base_url=ingest.url, limits=limits, timeout=30.0) as client:

        async def one(n: int) -> tuple[int, Shape, httpx.Response]:
            path, headers, body, shape = requests_of(tenant, n)
            return n, shape, await client.post(path, json=body, headers=headers)

        async def health() -> httpx.Response:
            return await client.get("/healthz")

        started = time.monotonic()
        answers, probes = await asyncio.gather(
            asyncio.gather(*(one(n) for n in range(CLIENTS))),
            asyncio.gather(*(health() for _ in range(10))),
        )
        took = time.monotonic() - started
    # Once the crowd is gone, the ingest takes requests again (on a new connection: the
    # crowd's idle ones may have been closed by the server meanwhile).
    async with httpx.AsyncClient(base_url=ingest.url, timeout=30.0) as client:
        path, headers, body, _ = requests_of(tenant, 0)
        after = await client.post(path, json=body, headers=headers)

    refused = [(n, shape, r) for n, shape, r in answers if r.status_code == 503]
    taken = [r for _, _, r in answers if r.status_code in (200, 202)]
    assert len(refused) + len(taken) == CLIENTS, {r.status_code for _, _, r in answers}
    assert refused
    assert taken
    for _, shape, response in refused:
        assert int(response.headers["Retry-After"]) >= 1
        shape(response, response.url.path)
    # The bound holds in every dialect, and each refuses in its own shape.
    assert {shape for _, shape, _ in refused} == {problem_json, routee, masiv, cij}
    assert {r.status_code for r in probes} == {200}
    assert after.status_code == 202
    grown = peak_rss_mib(ingest.process.popen.pid) - before
    print(
        f"\n{CLIENTS} clients, bound {MAX_IN_FLIGHT}: {len(taken)} taken, {len(refused)} "
        f"refused, {took:.1f} s, peak RSS grew {grown:.1f} MiB"
    )
    assert grown < 150


SLOW = 2.0
BACKLOG = 1500
SEND_CONCURRENCY = 1
# Seconds between two readings of the sender's in-flight gauge: often enough to catch a
# batch taken before the one in hand has ended.
SAMPLE_EVERY = 0.02


def sample(metrics: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples that have these labels, from a Prometheus text page."""
    total = 0.0
    for match in re.finditer(rf"^{name}\{{([^}}]*)\}} (\S+)$", metrics, re.MULTILINE):
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if labels.items() <= found.items():
            total += float(match.group(2))
    return total


async def test_a_slow_provider_slows_the_sender_without_holding_the_backlog(
    settings: Settings,
    child_env: dict[str, str],
    db: AsyncDatabase[Document],
    emulators: Emulators,
) -> None:
    await sandbox_app(db)
    # As an operator would: through the emulator's control API.
    async with httpx.AsyncClient() as control:
        answer = await control.post(
            f"{emulators.fcm.url}/_emulator/latency", json={"seconds": SLOW}
        )
        assert answer.status_code == 200
    jobs = [
        PushJob(
            notification_id=f"n-{uuid.uuid4().hex[:8]}",
            account_id="acc-e2e",
            app_id="sandbox-app",
            provider="fcm",
            platform="android",
            token=f"slow-{i}",
            token_hash=hash_token(f"slow-{i}"),
            notification=Content(title="Hola"),
        )
        for i in range(BACKLOG)
    ]
    await kafka.ensure_topics(settings)
    await publish(settings, topics.JOB_TOPICS["fcm"], device_key("sandbox-app", "slow"), *jobs)

    port = processes.free_port()
    env = {
        **child_env,
        **emulators.env,
        "PUSHLINE_METRICS_PORT": str(port),
        "PUSHLINE_SEND_CONCURRENCY": str(SEND_CONCURRENCY),
    }
    sender = processes.Process(["services.cli", "sender"], env)
    try:
        await sender.wait_ready(f"http://127.0.0.1:{port}/readyz")
        started = time.monotonic()
        in_flight: list[float] = []
        sent = 0.0
        async with httpx.AsyncClient(timeout=30.0) as client:
            while sent < BACKLOG:
                assert time.monotonic() - started < 240, f"{sent} sent:\n{sender.output()}"
                page = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
                in_flight.append(sample(page, "pushline_sender_in_flight_jobs", provider="fcm"))
                sent = sample(page, "pushline_sends_total", provider="fcm", outcome="success")
                await asyncio.sleep(SAMPLE_EVERY)
        took = time.monotonic() - started
        peak = peak_rss_mib(sender.popen.pid)
    finally:
        sender.close()
    bound = SEND_CONCURRENCY * BATCH
    # Exactly, from the provider's side: a call's answers come together, SLOW after its
    # requests, so a window shorter than SLOW holds the answers of calls made at once.
    answered = sorted(record.received_at for record in emulators.fcm.controls.records())
    at_once = max(bisect_left(answered, t + 0.9 * SLOW) - i for i, t in enumerate(answered))
    print(
        f"\n{BACKLOG} jobs at {SLOW} s each: {took:.1f} s, in flight at most {max(in_flight):.0f}"
        f" (bound {bound}, {len(in_flight)} readings), {at_once} sends at once at the provider,"
        f" sender peak RSS {peak:.0f} MiB"
    )
    assert 0 < max(in_flight) <= bound
    assert at_once <= SEND_CONCURRENCY * CALL_SIZE
    assert peak < 600
