"""What every scenario shares: a namespace and database of its own on the local stack, the
emulators (each in a thread of its own), Pushline's services as processes, their CPU time
and RSS read from /proc, progress sampling, the audience loader and the results files.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.core import kafka, topics
from services.core.events import Audience, Content, SendRequest, utc_now
from services.core.settings import SandboxSettings, Settings
from services.core.store.client import Document
from services.core.store.devices import device_id
from services.core.store.directory import Directory
from services.core.store.indexes import ensure_indexes
from services.core.tokens import hash_token
from services.sandbox import environment
from services.sandbox.emulators import APNSEmulator, EmulatorThread, FCMEmulator, WebPushEmulator
from services.sandbox.emulators.settings import sandbox_settings

ACCOUNT = "bench"
APP = "bench-app"
PROVIDERS = ("fcm", "apns", "webpush")
PLATFORM = {"fcm": "android", "apns": "ios", "webpush": "web"}
# Devices per addressed contact, cellphone or email in a benchmark audience.
GROUP = 100
# Devices per bulk insert.
LOAD_BATCH = 5000
SAMPLE_SECONDS = 0.25


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU time of a process, or of one of its threads, from /proc (Linux)."""
    stat = Path(f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat")
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (VmHWM), in MiB."""
    return _status_mb(pid, "VmHWM")


def rss_mb(pid: int) -> float:
    """The process's resident set size now (VmRSS), in MiB."""
    return _status_mb(pid, "VmRSS")


def _status_mb(pid: int, name: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {name} for process {pid}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """One process of Pushline's (or the baseline's), started with `argv` after `python -m`."""

    def __init__(
        self, name: str, argv: Sequence[str], env: dict[str, str], port: int | None = None
    ) -> None:
        self.name = name
        self.port = port
        self.process = subprocess.Popen(
            [sys.executable, "-m", *argv],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._cpu_start = 0.0

    def mark(self) -> None:
        """Start counting CPU time from now."""
        self._cpu_start = cpu_seconds(self.process.pid)

    def cpu(self) -> float:
        """CPU seconds since `mark()`."""
        return cpu_seconds(self.process.pid) - self._cpu_start

    def peak_rss(self) -> float:
        return peak_rss_mb(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Stage:
    """A run's namespace, database, emulators and the services started in it."""

    settings: Settings
    # Where the services find the emulators.
    sandbox: SandboxSettings
    state: Path
    db: AsyncDatabase[Document]
    fcm: FCMEmulator
    apns: APNSEmulator
    webpush: WebPushEmulator
    # One per emulator, so that each one's CPU time can be read.
    emulators: dict[str, EmulatorThread]
    services: list[Service] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith("PUSHLINE_")},
            "PUSHLINE_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap,
            "PUSHLINE_MONGODB_URI": self.settings.mongodb_uri,
            "PUSHLINE_NAMESPACE": self.settings.namespace,
            "PUSHLINE_STATE_DIR": str(self.state),
            "PUSHLINE_LOG_LEVEL": "WARNING",
            **environment.variables(self.sandbox),
        }

    def emulators_cpu(self) -> dict[str, float]:
        """CPU seconds each emulator's thread (in this process) has used so far."""
        return {
            provider: cpu_seconds(os.getpid(), thread.native_id)
            for provider, thread in self.emulators.items()
        }

    async def start(self, *names: str) -> list[Service]:
        """Start Pushline services (`pushline <name>`) and wait until each is ready."""
        started = []
        for name in names:
            port = free_port()
            env = {**self.env(), "PUSHLINE_METRICS_PORT": str(port)}
            if name == "ingest":
                env["PUSHLINE_INGEST_PORT"] = str(port)
            service = Service(name, ["services.cli", name], env, port)
            self.services.append(service)
            await ready(f"http://127.0.0.1:{port}/readyz", service)
            started.append(service)
        return started

    def spawn(self, name: str, argv: Sequence[str]) -> Service:
        """Start a process that is not a Pushline service (the baseline consumer)."""
        service = Service(name, argv, self.env())
        self.services.append(service)
        return service

    async def warm_up(self, *, done: bool) -> None:
        """Send to nobody and wait until the resolver has taken it (and feedback has
        settled it, when `done`): their consumer groups have joined by then."""
        request = await send(self, {"contact_ids": ["nobody"]})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            doc = await self.db.notifications.find_one({"_id": request.notification_id})
            if doc is not None and (not done or doc["state"] == "done"):
                return
            await asyncio.sleep(0.1)
        raise RuntimeError("the services did not take a send request within 60 s")

    async def load(self, devices: Iterator[Document]) -> float:
        """Bulk-insert devices, entered in the contact directory first (as the start-up
        build enters devices stored without it); returns devices per second."""
        directory = Directory(self.db)
        started, count, batch = time.perf_counter(), 0, []
        for device in devices:
            batch.append(device)
            if len(batch) >= LOAD_BATCH:
                await directory.add(batch)
                await self.db.devices.insert_many(batch, ordered=False)
                count, batch = count + len(batch), []
        if batch:
            await directory.add(batch)
            await self.db.devices.insert_many(batch, ordered=False)
            count += len(batch)
        return count / (time.perf_counter() - started)


@asynccontextmanager
async def stage() -> AsyncIterator[Stage]:
    """A fresh namespace and database, a sandbox app, and the emulators, each in a thread."""
    base = Settings()
    run = uuid.uuid4().hex[:10]
    root = base.mongodb_uri.partition("?")[0].rsplit("/", 1)[0]
    settings = base.model_copy(
        update={"namespace": f"bench{run}", "mongodb_uri": f"{root}/bench_{run}"}
    )
    mongo: AsyncMongoClient[Document] = AsyncMongoClient(settings.mongodb_uri, tz_aware=True)
    db = mongo.get_default_database()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as threads:
        state = Path(tmp)
        fcm, apns = (
            FCMEmulator(record_limit=1),
            APNSEmulator(cert_dir=state / "tls", record_limit=1),
        )
        webpush = WebPushEmulator(record_limit=1)
        emulators = {
            emulator.provider: threads.enter_context(EmulatorThread(emulator))
            for emulator in (fcm, apns, webpush)
        }
        sandbox = sandbox_settings(fcm, apns, webpush, state / "emulators")
        await ensure_indexes(db)
        now = utc_now()
        await db.apps.insert_one(
            {
                "_id": APP,
                "account_id": ACCOUNT,
                "name": "Bench",
                "sandbox": True,
                "created": now,
                "updated": now,
            }
        )
        running = Stage(settings, sandbox, state, db, fcm, apns, webpush, emulators)
        try:
            yield running
        finally:
            for service in running.services:
                service.stop()
            await mongo.drop_database(db.name)
            await mongo.close()
            await kafka.delete_namespace(settings)


async def ready(url: str, service: Service) -> None:
    deadline = time.monotonic() + 120
    async with httpx.AsyncClient(timeout=2.0) as http:
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                raise RuntimeError(f"{service.name} exited with {service.process.returncode}")
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.3)
    raise RuntimeError(f"{url} did not become ready")


def shares(count: int, providers: Sequence[str]) -> dict[str, int]:
    """How many of `audience(count, providers)` each provider has."""
    whole, rest = divmod(count, len(providers))
    counts: Counter[str] = Counter()
    for index, provider in enumerate(providers):
        counts[provider] += whole + (index < rest)
    return dict(counts)


def audience(count: int, providers: Sequence[str], webpush: WebPushEmulator) -> Iterator[Document]:
    """`count` devices, the providers taken in turn, in groups of GROUP devices sharing a
    contact id, a cellphone and an email (see `selectors`)."""
    now = utc_now()
    for index in range(count):
        provider = providers[index % len(providers)]
        subscription = None
        if provider == "apns":
            token = f"{index:064x}"
        elif provider == "fcm":
            token = f"bench-fcm-{index}"
        else:
            subscription = webpush.subscribe()
            token = subscription["endpoint"]
        group = index // GROUP
        yield {
            "_id": device_id(APP, hash_token(token)),
            "app_id": APP,
            "account_id": ACCOUNT,
            "platform": PLATFORM[provider],
            "provider": provider,
            "token": token,
            "token_hash": hash_token(token),
            "subscription": subscription,
            "contact_id": f"contact-{group}",
            "cellphone": f"57300{group:07d}",
            "email": f"user{group}@bench.example",
            "status": "active",
            "registered_at": now,
            "created": now,
        }


def selectors(count: int) -> dict[str, list[str]]:
    """An Audience reaching every device of `audience(count)` once: the first third of the
    groups by contact id, the second by cellphone, the rest by email."""
    groups = (count + GROUP - 1) // GROUP
    third = groups // 3
    return {
        "contact_ids": [f"contact-{g}" for g in range(third)],
        "cellphones": [f"57300{g:07d}" for g in range(third, 2 * third)],
        "emails": [f"user{g}@bench.example" for g in range(2 * third, groups)],
    }


async def send(stage: Stage, to: dict[str, Any]) -> SendRequest:
    """Publish one send request to `to` (an Audience's fields)."""
    request = SendRequest(
        notification_id=f"bench-{uuid.uuid4()}",
        account_id=ACCOUNT,
        app_id=APP,
        to=Audience.model_validate(to),
        notification=Content(title="Benchmark", body="One of many"),
    )
    producer = kafka.producer(stage.settings, client_id="bench")
    await producer.start()
    try:
        await producer.send_and_wait(
            stage.settings.scoped(topics.SEND_REQUESTS.name),
            kafka.encode(request),
            key=topics.notification_key(request.notification_id),
        )
    finally:
        await producer.stop()
    return request


# The counters of a notification's ended jobs.
ENDED = ("sent", "failed", "invalid")


def ended(counters: Mapping[str, int]) -> int:
    """How many jobs ended, by a notification's (or one platform's) counters."""
    return sum(counters.get(name, 0) for name in ENDED)


async def progress(stage: Stage, notification_id: str, count: int) -> int:
    """The notification's ended jobs, held below `count` until its state is `done` (one find
    on the stage's database)."""
    doc = await stage.db.notifications.find_one(
        {"_id": notification_id}, {"state": 1, "counters": 1}
    )
    done = ended((doc or {}).get("counters", {}))
    return done if doc is not None and doc["state"] == "done" else min(count - 1, done)


class Sampler:
    """Samples a progress count every SAMPLE_SECONDS until it reaches `target`."""

    def __init__(self, count: Callable[[], Awaitable[int]], target: int) -> None:
        self._count = count
        self.target = target
        self.series: list[tuple[float, int]] = []

    async def run(
        self, limit: float, *, since: float | None = None, stall: float | None = None
    ) -> float:
        """Seconds from `since` (a `time.perf_counter()`; now by default) until the count
        reached the target. Raises TimeoutError after `limit` seconds, or once the count
        has not moved for `stall` seconds."""
        started = time.perf_counter() if since is None else since
        moved, last = started, -1
        while True:
            done = await self._count()
            now = time.perf_counter()
            elapsed = now - started
            self.series.append((round(elapsed, 3), done))
            if done >= self.target:
                return elapsed
            if done != last:
                moved, last = now, done
            if elapsed > limit or (stall is not None and now - moved > stall):
                raise TimeoutError(f"{done} of {self.target} after {elapsed:.0f} s")
            await asyncio.sleep(SAMPLE_SECONDS)


def costs(services: Sequence[Service], notifications: int) -> dict[str, Any]:
    """CPU seconds per 1,000 notifications (all given services) and peak RSS of each."""
    cpu = {s.name: round(s.cpu(), 2) for s in services}
    return {
        "cpu_seconds": cpu,
        "cpu_seconds_per_1000": round(sum(cpu.values()) * 1000 / max(notifications, 1), 3),
        "peak_rss_mb": {s.name: round(s.peak_rss(), 1) for s in services},
    }


def emulator_costs(
    stage: Stage, cpu_start: Mapping[str, float], sends: Mapping[str, int], seconds: float
) -> dict[str, Any]:
    """Since `cpu_start` (`stage.emulators_cpu()` then), for `sends` notifications by provider:
    the emulators' CPU seconds per 1,000 notifications, each emulator's per 1,000 of its own,
    and the share of one core they were busy over `seconds`. They share this process's
    interpreter lock, so their sum is what counts: under 0.5, they could have served twice
    the rate."""
    cpu = {p: used - cpu_start[p] for p, used in stage.emulators_cpu().items()}
    total = sum(cpu.values())
    return {
        "emulators_cpu_seconds_per_1000": round(total * 1000 / max(sum(sends.values()), 1), 3),
        "emulator_cpu_seconds_per_1000": {
            p: round(cpu[p] * 1000 / n, 3) for p, n in sends.items() if n
        },
        "emulators_busy": round(total / seconds, 3),
    }


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]
