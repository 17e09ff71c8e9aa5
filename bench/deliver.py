"""The `deliver` scenario: one send request to N devices, end to end.

The resolver, one sender and feedback run as processes; the emulators answer. Measures
notifications per second from the request's publication to its `done` state, the latency of
each send from the request's acceptance to the provider's answer (as feedback recorded it),
the CPU time and peak RSS of the three processes, and what the run cost Kafka's and the
store's JVMs (CPU time) and the store (operations on the run's database).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.harness import (
    Sampler,
    Stage,
    audience,
    costs,
    emulator_costs,
    ended,
    percentile,
    progress,
    selectors,
    send,
    shares,
)
from bench.servers import Servers

WORKERS = ("resolver", "sender", "feedback")


async def run(stage: Stage, providers: Sequence[str], count: int) -> dict[str, Any]:
    """One measured delivery to `count` devices, the providers taken in turn."""
    load_rate = await stage.load(audience(count, providers, stage.webpush))
    services = await stage.start(*WORKERS)
    await stage.warm_up(done=True)
    servers = Servers(stage)
    for service in services:
        service.mark()
    await servers.mark()
    emulators_cpu = stage.emulators_cpu()
    request = await send(stage, selectors(count))
    sampler = Sampler(lambda: progress(stage, request.notification_id, count), count)
    seconds = await sampler.run(limit=max(120.0, count / 20))
    spent = costs(services, count)
    # The sampler's reads of the notification are the benchmark's, not Pushline's.
    shared = await servers.costs(count, own_queries=len(sampler.series))
    emulators = emulator_costs(stage, emulators_cpu, shares(count, providers), seconds)
    latencies = [
        (doc["answered_at"] - request.accepted_at).total_seconds() * 1000
        async for doc in stage.db.deliveries.find(
            {"notification_id": request.notification_id}, {"answered_at": 1}
        )
    ]
    doc = await stage.db.notifications.find_one({"_id": request.notification_id})
    counters = (doc or {}).get("counters", {})
    return {
        "case": "+".join(providers) if len(providers) == 1 else "mixed",
        "notifications": count,
        "counted": ended(counters),
        "sent": counters.get("sent", 0),
        "seconds": round(seconds, 3),
        "per_second": round(count / seconds, 1),
        "p50_ms": round(percentile(latencies, 0.5), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "load_per_second": round(load_rate),
        **spent,
        **shared,
        **emulators,
        "series": sampler.series,
    }
