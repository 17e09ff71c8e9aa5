"""Pushline's workers as processes, the provider emulators in a thread, and a sandbox app
whose devices they reach: what the end-to-end and fault tests run on."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from pymongo.asynchronous.database import AsyncDatabase

from services.core import topics
from services.core.events import Audience, Content, SendRequest, utc_now
from services.core.settings import SandboxSettings, Settings
from services.core.store.client import Document
from services.core.store.devices import device_id
from services.core.store.indexes import ensure_indexes
from services.core.tokens import hash_token
from services.sandbox import environment
from services.sandbox.emulators import APNSEmulator, EmulatorThread, FCMEmulator, WebPushEmulator
from services.sandbox.emulators.settings import sandbox_settings
from tests.integration import processes
from tests.integration.kafka_io import eventually, publish

ACCOUNT = "acc-e2e"
APP = "sandbox-app"


class Emulators:
    """FCM, APNs and Web Push emulators, serving from a thread of the test process."""

    def __init__(self, cert_dir: Path) -> None:
        self.fcm = FCMEmulator(record_limit=100_000)
        self.apns = APNSEmulator(cert_dir=cert_dir, record_limit=100_000)
        self.webpush = WebPushEmulator(record_limit=100_000)
        self.thread = EmulatorThread(self.fcm, self.apns, self.webpush)
        # Set by `point()`.
        self.sandbox = SandboxSettings.model_construct()
        self.env: dict[str, str] = {}

    def point(self, state_dir: Path) -> None:
        """Once they listen, what `pushline emulators` does: write the sandbox's settings
        under `state_dir`. `sandbox` then points a sender at these emulators, and `env` (the
        state dir and the `PUSHLINE_SANDBOX_*` variables) a worker process."""
        self.sandbox = sandbox_settings(self.fcm, self.apns, self.webpush, state_dir / "emulators")
        environment.write(state_dir, self.sandbox)
        self.env = {"PUSHLINE_STATE_DIR": str(state_dir), **environment.variables(self.sandbox)}


class Pipeline:
    """Resolver, sender and feedback as processes, the sandbox pointed at the emulators."""

    def __init__(self, env: dict[str, str], niceness: int = 0) -> None:
        """`niceness`: the workers' CPU priority below the test process's (`Process`)."""
        self.env = env
        self.niceness = niceness
        self.running: dict[str, processes.Process] = {}
        self.ports: dict[str, int] = {}
        self.stopped: list[processes.Process] = []

    async def start(self, name: str, service: str | None = None) -> None:
        """Start `service` (default: `name`) as the process called `name`."""
        port = processes.free_port()
        process = processes.Process(
            ["services.cli", service or name],
            {**self.env, "PUSHLINE_METRICS_PORT": str(port)},
            self.niceness,
        )
        self.running[name] = process
        self.ports[name] = port
        await process.wait_ready(f"http://127.0.0.1:{port}/readyz")

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown, no last commit."""
        process = self.running.pop(name)
        process.popen.kill()
        process.popen.wait()
        self.stopped.append(process)

    def close(self) -> None:
        for process in [*self.running.values(), *self.stopped]:
            process.close()


@asynccontextmanager
async def running_pipeline(env: dict[str, str]) -> AsyncIterator[Pipeline]:
    """Resolver, sender and feedback started with `env`, and stopped at the end."""
    running = Pipeline(env)
    try:
        for name in ("resolver", "sender", "feedback"):
            await running.start(name)
        yield running
    finally:
        running.close()


def device(token: str, platform: str, provider: str, **more: object) -> Document:
    now = utc_now()
    return {
        "_id": device_id(APP, hash_token(token)),
        "app_id": APP,
        "account_id": ACCOUNT,
        "platform": platform,
        "provider": provider,
        "token": token,
        "token_hash": hash_token(token),
        "contact_id": "ana",
        "status": "active",
        "registered_at": now,
        "created": now,
        **more,
    }


async def sandbox_app(db: AsyncDatabase[Document]) -> None:
    await ensure_indexes(db)
    now = utc_now()
    await db.apps.insert_one(
        {
            "_id": APP,
            "account_id": ACCOUNT,
            "name": "Sandbox",
            "sandbox": True,
            "created": now,
            "updated": now,
        }
    )


async def send_to_ana(
    settings: Settings, account_id: str = ACCOUNT, app_id: str = APP
) -> SendRequest:
    send = SendRequest(
        notification_id=f"n-{uuid.uuid4()}",
        account_id=account_id,
        app_id=app_id,
        to=Audience(contact_ids=["ana"]),
        notification=Content(title="Hola Ana", body="Tu pedido va en camino"),
        data={"order": "42"},
    )
    await publish(
        settings, topics.SEND_REQUESTS, topics.notification_key(send.notification_id), send
    )
    return send


async def finished(db: AsyncDatabase[Document], send: SendRequest, within: float = 90) -> Document:
    async def done() -> Document | None:
        doc = await db.notifications.find_one({"_id": send.notification_id})
        return doc if doc and doc["state"] == "done" else None

    return await eventually(done, within=within)
