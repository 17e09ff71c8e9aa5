"""The `baseline` scenario, the ceiling the machine allows: the resolver's per-token jobs,
read from the same job topics by a bare aiokafka consumer and sent to the same emulators
through the same provider clients, batch size, call size and concurrency as the sender: no
Faust, no outcomes, no store on the way (the app's sandbox flag is read once, as the sender does).

Also the emulators' own capacity: the same jobs read into memory first, then only sent.

`python -m bench.baseline stream|preload COUNT OUT` is the consumer process; it writes its
figures, read from its own /proc entry, to OUT as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from pymongo import AsyncMongoClient

from bench.fanout import resolve
from bench.harness import Stage, cpu_seconds, emulator_costs, peak_rss_mb, shares
from services.core import eventloop, kafka, topics
from services.core.events import PushJob
from services.core.secrets import Vault
from services.core.settings import load_settings
from services.core.store.apps import Apps
from services.core.store.client import Document
from services.sender.app import BATCH
from services.sender.dispatch import CALL_SIZE
from services.sender.governor import Governor
from services.sender.providers import AppProviders


async def run(stage: Stage, providers: Sequence[str], count: int, mode: str) -> dict[str, Any]:
    """Resolve `count` jobs onto the job topics, then time the bare consumer over them."""
    await resolve(stage, providers, count)
    for service in stage.services:
        service.stop()  # the resolver: idle from here, but not part of the baseline
    out = stage.state / f"baseline-{mode}.json"
    emulators_cpu = stage.emulators_cpu()
    consumer = stage.spawn("baseline", ["bench.baseline", mode, str(count), str(out)])
    deadline = time.monotonic() + max(120.0, count / 20)
    while consumer.process.poll() is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the baseline consumer did not finish {count} jobs")
        await asyncio.sleep(0.2)
    if consumer.process.returncode != 0:
        raise RuntimeError(f"the baseline consumer exited with {consumer.process.returncode}")
    figures: dict[str, Any] = json.loads(out.read_text())
    sends = shares(count, providers)
    figures.update(emulator_costs(stage, emulators_cpu, sends, figures["seconds"]))
    name = "+".join(providers) if len(providers) == 1 else "mixed"
    return {"case": name if mode == "stream" else f"{name} (emulators)", **figures}


class _Sender:
    """Sends batches of one provider's jobs, at most `concurrency` at a time (the sender's
    `PUSHLINE_SEND_CONCURRENCY`), each in provider calls of CALL_SIZE one after another."""

    def __init__(self, providers: AppProviders, concurrency: int) -> None:
        self._providers = providers
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self.ended = 0
        self.succeeded = 0

    async def submit(self, provider: str, jobs: list[PushJob]) -> None:
        await self._slots.acquire()
        task = asyncio.ensure_future(self._send(provider, jobs))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks))

    async def _send(self, provider: str, jobs: list[PushJob]) -> None:
        try:
            client = await self._providers.get(jobs[0].app_id, provider)
            for start in range(0, len(jobs), CALL_SIZE):
                results = await client.send(jobs[start : start + CALL_SIZE])
                self.ended += len(results)
                self.succeeded += sum(r.outcome == "success" for r in results)
        finally:
            self._slots.release()


async def _consume(mode: str, count: int) -> dict[str, Any]:
    settings = load_settings()
    mongo: AsyncMongoClient[Document] = AsyncMongoClient(settings.mongodb_uri, tz_aware=True)
    db = mongo.get_default_database()
    providers = AppProviders(
        settings, Apps(db, Vault(None)), Governor(db, settings.provider_quotas)
    )
    sender = _Sender(providers, settings.send_concurrency)
    # Both lanes: the jobs of a `to.all` or segment send are on the bulk topics.
    by_topic = {
        settings.scoped(t.name): (p, t)
        for lane in topics.LANE_TOPICS.values()
        for p, t in lane.items()
    }
    consumer = AIOKafkaConsumer(
        *by_topic,
        bootstrap_servers=settings.kafka_servers,
        group_id=settings.scoped("bench-baseline"),
        auto_offset_reset="earliest",
        max_poll_records=BATCH,
    )
    await consumer.start()
    series: list[tuple[float, int]] = []
    read: list[tuple[str, list[PushJob]]] = []
    received, started, cpu_start = 0, 0.0, 0.0
    try:
        while received < count:
            batches = await consumer.getmany(timeout_ms=50, max_records=BATCH)
            if not batches:
                continue
            if not received:
                started, cpu_start = time.perf_counter(), cpu_seconds(os.getpid())
            jobs: defaultdict[str, list[PushJob]] = defaultdict(list)
            for partition, records in batches.items():
                provider, topic = by_topic[partition.topic]
                for record in records:
                    job = kafka.decode(topic, record.value)
                    assert isinstance(job, PushJob)
                    jobs[provider].append(job)
                    received += 1
            for provider, group in jobs.items():
                if mode == "stream":
                    await sender.submit(provider, group)
                    series.append((round(time.perf_counter() - started, 3), sender.ended))
                else:
                    read.append((provider, group))
        if mode == "preload":
            started, cpu_start = time.perf_counter(), cpu_seconds(os.getpid())
            for provider, group in read:
                await sender.submit(provider, group)
                series.append((round(time.perf_counter() - started, 3), sender.ended))
        await sender.drain()
        seconds = time.perf_counter() - started
        series.append((round(seconds, 3), sender.ended))
    finally:
        await consumer.stop()
        await providers.aclose()
        await mongo.close()
    cpu = cpu_seconds(os.getpid()) - cpu_start
    return {
        "notifications": count,
        "counted": sender.ended,
        "sent": sender.succeeded,
        "seconds": round(seconds, 3),
        "per_second": round(count / seconds, 1),
        "cpu_seconds": {"baseline": round(cpu, 2)},
        "cpu_seconds_per_1000": round(cpu * 1000 / count, 3),
        "peak_rss_mb": {"baseline": round(peak_rss_mb(os.getpid()), 1)},
        "series": series,
    }


def main(argv: list[str]) -> None:
    mode, count, out = argv
    # The sender's stand-in runs on the sender's loop.
    eventloop.install()
    figures = asyncio.run(_consume(mode, int(count)))
    Path(out).write_text(json.dumps(figures))


if __name__ == "__main__":
    main(sys.argv[1:])
