"""The `register` scenario: Routee-dialect registrations (`POST /messages/android`) from
concurrent clients against the ingest for a fixed time, with the resolver and feedback
storing them. Measures accepted requests per second and their latency, and registrations
per second from the first request until feedback has stored them all.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import aiohttp

from bench.harness import ACCOUNT, APP, Sampler, Stage, costs, percentile
from services.core.store.accounts import Accounts
from services.core.store.limits import AccountLimits, Limits

SERVICES = ("ingest", "resolver", "feedback")


async def run(stage: Stage, clients: int, seconds: float) -> dict[str, Any]:
    """`clients` clients, each sending its next request once the last is answered."""
    _, api_key = await Accounts(stage.db).create("Bench", account_id=ACCOUNT)
    # What is measured is the ingest, not the account's rate limit.
    unlimited = Limits(requests_per_second=1_000_000, requests_burst=10_000_000)
    await AccountLimits(stage.db).set(ACCOUNT, unlimited)
    services = await stage.start(*SERVICES)
    for service in services:
        service.mark()
    latencies: list[float] = []
    refused = 0
    sequence = itertools.count()

    async def stored() -> int:
        return await stage.db.devices.count_documents({})

    sampler = Sampler(stored, 10**12)
    sampling = asyncio.ensure_future(sampler.run(limit=seconds + 300))
    started = time.perf_counter()

    url = f"http://127.0.0.1:{services[0].port}/messages/android"
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}

    async def client(http: aiohttp.ClientSession) -> None:
        nonlocal refused
        while time.perf_counter() - started < seconds:
            index = next(sequence)
            body = {
                "routeeContactId": f"contact-{index}",
                "token": f"bench-register-{index}",
                "implementationId": APP,
            }
            sent = time.perf_counter()
            async with http.post(url, data=json.dumps(body), headers=headers) as answer:
                await answer.read()
            if answer.status == 200:
                latencies.append((time.perf_counter() - sent) * 1000)
            else:
                refused += 1

    # aiohttp, not httpx: httpx spent 1.6-2.2 ms of CPU per request here, ten times
    # aiohttp, so with 16 clients the benchmark process was what bound the rate and latency.
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=clients),
        timeout=aiohttp.ClientTimeout(total=30.0),
    ) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    load_seconds = time.perf_counter() - started
    sampler.target = len(latencies)
    all_stored = await sampling
    return {
        "case": f"{clients} clients, {seconds:.0f} s",
        "notifications": len(latencies),
        "counted": sampler.series[-1][1],
        "refused": refused,
        "accepted_per_second": round(len(latencies) / load_seconds, 1),
        "p50_ms": round(percentile(latencies, 0.5), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "seconds": round(all_stored, 3),
        "per_second": round(len(latencies) / all_stored, 1),
        **costs(services, len(latencies)),
        "series": sampler.series,
    }
