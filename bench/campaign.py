"""The `campaign` scenario: one `to.all` send to every device of an app, N devices in a mix of
providers (60% FCM, 30% APNs, 10% Web Push by default), end to end.

The resolver, one sender and feedback run as processes; the emulators answer, each in a
thread of the benchmark. From the request's acceptance two progress counts are sampled side
by side: the jobs the fan-out published (the job topics' end offsets, as in `fanout`) and
the notification's ended jobs until its `done` state. Besides both rates: the CPU time of
Pushline's processes and of Kafka's and the store's JVMs and the store's operations, per
1,000 notifications (`bench/servers.py`); every process's RSS, sampled all along (to judge
whether it stays flat over a long run); each emulator's CPU time; the notification's
counters at the end, checked exact.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Any

from bench.fanout import job_counter
from bench.harness import (
    ENDED,
    PLATFORM,
    PROVIDERS,
    Sampler,
    Stage,
    audience,
    costs,
    emulator_costs,
    ended,
    progress,
    rss_mb,
    send,
    shares,
)
from bench.servers import Servers

Mix = tuple[tuple[str, int], ...]

WORKERS = ("resolver", "sender", "feedback")
DEFAULT_MIX: Mix = (("fcm", 60), ("apns", 30), ("webpush", 10))
RSS_SECONDS = 1.0
# A run may take all the time its size needs (a million devices: half an hour or more), but
# one whose counts stop moving this long has failed.
STALL_SECONDS = 300.0


def parse_mix(text: str) -> Mix:
    """`fcm=60,apns=30,webpush=10` as ((provider, percent), ...).

    Raises ValueError unless each part names a different provider with a whole percentage
    and the percentages add up to 100.
    """
    mix = []
    for part in text.split(","):
        name, equals, share = (word.strip() for word in part.partition("="))
        if name not in PROVIDERS or not equals or not share.isdigit():
            raise ValueError(f"{part!r} is not provider=percent (providers: {PROVIDERS})")
        mix.append((name, int(share)))
    if len({name for name, _ in mix}) != len(mix):
        raise ValueError(f"a provider is named twice in {text!r}")
    if sum(share for _, share in mix) != 100:
        raise ValueError(f"the percentages of {text!r} do not add up to 100")
    return tuple(mix)


def rotation(mix: Mix) -> tuple[str, ...]:
    """The providers for `audience()` to take in turn so that they come in `mix`'s proportions:
    each as often as its percentage, in lowest terms (60/30/10: 6, 3 and 1 in 10)."""
    divisor = math.gcd(*(share for _, share in mix))
    return tuple(name for name, share in mix for _ in range(share // divisor))


class Memory:
    """The RSS of some processes, sampled every RSS_SECONDS while `sampling()`."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self._pids = dict(pids)
        self.series: dict[str, list[tuple[float, float]]] = {name: [] for name in pids}

    @asynccontextmanager
    async def sampling(self) -> AsyncIterator[None]:
        started = time.perf_counter()
        task = asyncio.create_task(self._every(started))
        try:
            yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
            self._sample(started)

    def summary(self) -> dict[str, dict[str, float]]:
        """Each process's RSS in MiB when sampling started, its highest sample and its last."""
        return {
            name: {
                "start": points[0][1],
                "peak": max(rss for _, rss in points),
                "end": points[-1][1],
            }
            for name, points in self.series.items()
        }

    async def _every(self, started: float) -> None:
        while True:
            self._sample(started)
            await asyncio.sleep(RSS_SECONDS)

    def _sample(self, started: float) -> None:
        elapsed = round(time.perf_counter() - started, 1)
        for name, pid in self._pids.items():
            self.series[name].append((elapsed, round(rss_mb(pid), 1)))


async def run(stage: Stage, count: int, mix: Mix = DEFAULT_MIX) -> dict[str, Any]:
    """One measured `to.all` send to `count` devices in the proportions of `mix`."""
    providers = rotation(mix)
    load_rate = await stage.load(audience(count, providers, stage.webpush))
    services = await stage.start(*WORKERS)
    await stage.warm_up(done=True)
    servers = Servers(stage)
    memory = Memory(
        {s.name: s.process.pid for s in services} | {"bench": os.getpid()} | servers.pids
    )
    for service in services:
        service.mark()
    await servers.mark()
    emulators_cpu = stage.emulators_cpu()
    limit = max(120.0, count / 20)
    async with job_counter(stage.settings) as jobs, memory.sampling():
        accepted = time.perf_counter()
        request = await send(stage, {"all": True})
        fanned = Sampler(jobs, count)
        done = Sampler(lambda: progress(stage, request.notification_id, count), count)
        async with asyncio.TaskGroup() as samplers:
            fanning = samplers.create_task(fanned.run(limit, since=accepted, stall=STALL_SECONDS))
            ending = samplers.create_task(done.run(limit, since=accepted, stall=STALL_SECONDS))
    seconds, jobs_seconds = ending.result(), fanning.result()
    spent = costs(services, count)
    # The sampler's reads of the notification are the benchmark's, not Pushline's.
    shared = await servers.costs(count, own_queries=len(done.series))
    expected = shares(count, providers)
    emulators = emulator_costs(stage, emulators_cpu, expected, seconds)
    doc = await stage.db.notifications.find_one(
        {"_id": request.notification_id}, {"counters": 1, "by_platform": 1}
    )
    assert doc is not None
    platforms = doc.get("by_platform", {})
    by_provider = {
        provider: {name: platforms.get(PLATFORM[provider], {}).get(name, 0) for name in ENDED}
        for provider in expected
    }
    counted = ended(doc["counters"])
    return {
        "case": f"{count:,} devices, " + ", ".join(f"{p} {share}%" for p, share in mix),
        "notifications": count,
        "counted": counted,
        "counters": {name: doc["counters"][name] for name in ("targeted", *ENDED)},
        "by_provider": by_provider,
        # Every device once: no job lost, none counted twice, each provider its share.
        "counters_exact": counted == count
        and doc["counters"]["targeted"] == count
        and all(ended(by_provider[p]) == n for p, n in expected.items()),
        "seconds": round(seconds, 3),
        "per_second": round(count / seconds, 1),
        "jobs_seconds": round(jobs_seconds, 3),
        "jobs_per_second": round(count / jobs_seconds, 1),
        "load_per_second": round(load_rate),
        **spent,
        **shared,
        **emulators,
        "rss_mb": memory.summary(),
        "series": done.series,
        "jobs_series": fanned.series,
        "rss_series": memory.series,
    }
