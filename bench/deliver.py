"""The `deliver` scenario: one send request to N devices of one provider, end to end.

Runs on the local stack (Kafka, store) with the resolver, one sender and feedback as
separate processes in a namespace of their own, and the provider emulators in this
process's background thread. Measures notifications per second from the request's
publication to its `done` state, and the CPU seconds each Pushline process used.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from services.core import kafka, topics
from services.core.events import Audience, Content, SendRequest, utc_now
from services.core.settings import Settings
from services.core.store.client import Document
from services.core.store.indexes import ensure_indexes
from services.core.tokens import hash_token
from services.emulators import APNSEmulator, EmulatorThread, FCMEmulator, WebPushEmulator
from services.emulators.__main__ import sandbox_vapid

WORKERS = ("resolver", "sender", "feedback")
PLATFORM = {"fcm": "android", "apns": "ios", "webpush": "web"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _devices(provider: str, count: int, webpush: WebPushEmulator) -> list[Document]:
    now = utc_now()
    devices = []
    for index in range(count):
        subscription = None
        if provider == "apns":
            token = f"{index:064x}"
        elif provider == "fcm":
            token = f"bench-fcm-{index}"
        else:
            subscription = webpush.subscribe()
            token = subscription["endpoint"]
        devices.append(
            {
                "app_id": "bench-app",
                "account_id": "bench",
                "platform": PLATFORM[provider],
                "provider": provider,
                "token": token,
                "token_hash": hash_token(token),
                "subscription": subscription,
                "contact_id": "everyone",
                "status": "active",
                "registered_at": now,
                "created": now,
            }
        )
    return devices


async def run_once(provider: str, count: int) -> dict[str, Any]:
    """One measured delivery of `count` notifications through `provider`."""
    base = Settings()
    run = uuid.uuid4().hex[:10]
    root = base.mongodb_uri.partition("?")[0].rsplit("/", 1)[0]
    settings = base.model_copy(
        update={"namespace": f"bench{run}", "mongodb_uri": f"{root}/bench_{run}"}
    )
    with tempfile.TemporaryDirectory() as state:
        fcm, apns = FCMEmulator(), APNSEmulator(cert_dir=Path(state) / "tls")
        webpush = WebPushEmulator()
        with EmulatorThread(fcm, apns, webpush):
            directory = Path(state) / "emulators"
            directory.mkdir()
            clients = {e.provider: e.client_config() for e in (fcm, apns, webpush)}
            clients["webpush"]["vapid"] = sandbox_vapid(
                settings.model_copy(update={"state_dir": Path(state)})
            )
            (directory / "clients.json").write_text(json.dumps(clients))
            return await _measure(settings, Path(state), provider, count, webpush)


async def _measure(
    settings: Settings, state: Path, provider: str, count: int, webpush: WebPushEmulator
) -> dict[str, Any]:
    mongo: AsyncMongoClient[Document] = AsyncMongoClient(settings.mongodb_uri, tz_aware=True)
    db = mongo.get_default_database()
    await ensure_indexes(db)
    now = utc_now()
    await db.apps.insert_one(
        {
            "_id": "bench-app",
            "account_id": "bench",
            "name": "Bench",
            "sandbox": True,
            "created": now,
            "updated": now,
        }
    )
    await db.devices.insert_many(_devices(provider, count, webpush))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PUSHLINE_")},
        "PUSHLINE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "PUSHLINE_MONGODB_URI": settings.mongodb_uri,
        "PUSHLINE_NAMESPACE": settings.namespace,
        "PUSHLINE_STATE_DIR": str(state),
        "PUSHLINE_LOG_LEVEL": "WARNING",
    }
    workers: dict[str, subprocess.Popen[bytes]] = {}
    try:
        async with httpx.AsyncClient(timeout=2.0) as http:
            for name in WORKERS:
                port = _free_port()
                workers[name] = subprocess.Popen(  # noqa: ASYNC220 - started once, not awaited
                    [sys.executable, "-m", "services.cli", name],
                    env={**env, "PUSHLINE_METRICS_PORT": str(port)},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                await _ready(http, f"http://127.0.0.1:{port}/readyz")
        cpu_before = {name: _cpu_seconds(p.pid) for name, p in workers.items()}
        send = SendRequest(
            notification_id=f"bench-{uuid.uuid4()}",
            account_id="bench",
            app_id="bench-app",
            to=Audience(contact_ids=["everyone"]),
            notification=Content(title="Benchmark", body="One of many"),
        )
        producer = kafka.producer(settings, client_id="bench")
        await producer.start()
        started = time.perf_counter()
        await producer.send_and_wait(
            settings.scoped(topics.SEND_REQUESTS.name),
            kafka.encode(send),
            key=topics.notification_key(send.notification_id),
        )
        await producer.stop()
        while True:
            doc = await db.notifications.find_one({"_id": send.notification_id})
            if doc and doc["state"] == "done":
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        cpu = {name: _cpu_seconds(p.pid) - cpu_before[name] for name, p in workers.items()}
        return {
            "provider": provider,
            "notifications": count,
            "seconds": round(elapsed, 3),
            "per_second": round(count / elapsed, 1),
            "sent": doc["counters"]["sent"],
            "cpu_seconds": {k: round(v, 2) for k, v in cpu.items()},
            "cpu_seconds_per_1000": round(sum(cpu.values()) * 1000 / count, 3),
        }
    finally:
        for process in workers.values():
            process.send_signal(signal.SIGTERM)
        for process in workers.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        await mongo.drop_database(db.name)
        await mongo.close()
        await kafka.delete_namespace(settings)


async def _ready(http: httpx.AsyncClient, url: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if (await http.get(url)).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.3)
    raise RuntimeError(f"{url} did not become ready")
