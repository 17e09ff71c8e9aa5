"""The `deliver` scenario: one send request to N devices, end to end.

The resolver, one sender and feedback run as processes; the emulators answer. Measures
notifications per second from the request's publication to its `done` state, the latency of
each send from the request's acceptance to the provider's answer (as feedback recorded it),
and the CPU time and peak RSS of the three processes.
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
    percentile,
    selectors,
    send,
)

WORKERS = ("resolver", "sender", "feedback")


async def run(stage: Stage, providers: Sequence[str], count: int) -> dict[str, Any]:
    """One measured delivery to `count` devices, the providers taken in turn."""
    load_rate = await stage.load(audience(count, providers, stage.webpush))
    services = await stage.start(*WORKERS)
    await stage.warm_up(done=True)
    for service in services:
        service.mark()
    emulators_cpu = stage.emulators_cpu()
    request = await send(stage, selectors(count))

    async def ended() -> int:
        doc = await stage.db.notifications.find_one({"_id": request.notification_id})
        if doc is None or doc.get("state") != "done":
            return min(count - 1, _ended(doc))
        return _ended(doc)

    sampler = Sampler(ended, count)
    seconds = await sampler.run(limit=max(120.0, count / 20))
    spent = costs(services, count)
    emulators = emulator_costs(stage, emulators_cpu, count, seconds)
    latencies = [
        (doc["answered_at"] - request.accepted_at).total_seconds() * 1000
        async for doc in stage.db.deliveries.find(
            {"notification_id": request.notification_id}, {"answered_at": 1}
        )
    ]
    doc = await stage.db.notifications.find_one({"_id": request.notification_id})
    return {
        "case": "+".join(providers) if len(providers) == 1 else "mixed",
        "notifications": count,
        "counted": _ended(doc),
        "sent": (doc or {}).get("counters", {}).get("sent", 0),
        "seconds": round(seconds, 3),
        "per_second": round(count / seconds, 1),
        "p50_ms": round(percentile(latencies, 0.5), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "load_per_second": round(load_rate),
        **spent,
        **emulators,
        "series": sampler.series,
    }


def _ended(doc: dict[str, Any] | None) -> int:
    counters = (doc or {}).get("counters", {})
    return int(sum(counters.get(k, 0) for k in ("sent", "failed", "invalid")))
