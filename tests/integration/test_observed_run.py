"""A run as `make run` starts it (services.sh, then prometheus.sh), with registrations
through the pipeline: Prometheus scrapes every service, the dashboard and alert rules name
only metrics the live services expose, the workers report their consumer lag, and the logs
hold ids but no device token and no secret."""

from __future__ import annotations

import json
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core import topics
from services.core.events import Audience, Content, RegisterDevice, SendRequest, utc_now
from services.core.settings import Settings
from services.core.store.client import Document
from services.core.tokens import hash_token
from tests.deploy import names
from tests.integration import processes
from tests.integration.kafka_io import eventually, publish, publish_raw
from tests.stack import ROOT

pytestmark = pytest.mark.integration

SERVICES_SCRIPT = ROOT / "deploy/local/services.sh"
PROMETHEUS_SCRIPT = ROOT / "deploy/local/prometheus.sh"
SERVICES = ("ingest", "resolver", "sender", "feedback")
ACCOUNT = "acc-obs"
APP = "app-obs"


@contextmanager
def running(env: dict[str, str]) -> Iterator[None]:
    """The four services and Prometheus, started by the scripts `make run` calls."""
    try:
        for script, verb in ((SERVICES_SCRIPT, "start"), (PROMETHEUS_SCRIPT, "up")):
            result = subprocess.run(
                [str(script), verb], env=env, capture_output=True, text=True, timeout=600
            )
            assert result.returncode == 0, result.stdout + result.stderr
        yield
    finally:
        for script, verb in ((PROMETHEUS_SCRIPT, "down"), (SERVICES_SCRIPT, "stop")):
            subprocess.run([str(script), verb], env=env, capture_output=True, timeout=120)


def register(token: str, **fields: object) -> RegisterDevice:
    return RegisterDevice.model_validate(
        {
            "request_id": f"req-{uuid.uuid4()}",
            "account_id": ACCOUNT,
            "app_id": APP,
            "platform": "android",
            "token": token,
            "contact_id": "contact-1",
            "track": True,
            **fields,
        }
    )


async def scrape(client: httpx.AsyncClient, port: int) -> str:
    response = await client.get(f"http://127.0.0.1:{port}/metrics")
    response.raise_for_status()
    return response.text


async def query(client: httpx.AsyncClient, prometheus: str, promql: str) -> list[object]:
    response = await client.get(f"{prometheus}/api/v1/query", params={"query": promql})
    response.raise_for_status()
    result: list[object] = response.json()["data"]["result"]
    return result


async def test_a_run_is_scraped_and_logs_no_token_or_secret(
    child_env: dict[str, str], settings: Settings, db: AsyncDatabase[Document], tmp_path: Path
) -> None:
    ports = {name: processes.free_port() for name in SERVICES}
    admin_port = processes.free_port()
    prometheus_port = processes.free_port()
    prometheus = f"http://127.0.0.1:{prometheus_port}"
    admin_token = "admin-" + secrets.token_urlsafe(24)
    env = {
        **child_env,
        "PUSHLINE_STATE_DIR": str(tmp_path),
        "PUSHLINE_INGEST_PORT": str(ports["ingest"]),
        "RESOLVER_PORT": str(ports["resolver"]),
        "SENDER_PORT": str(ports["sender"]),
        "FEEDBACK_PORT": str(ports["feedback"]),
        "PROMETHEUS_PORT": str(prometheus_port),
        **{
            f"PUSHLINE_EMULATOR_{name}_PORT": str(processes.free_port())
            for name in ("FCM", "APNS", "WEBPUSH")
        },
        "PUSHLINE_ADMIN_TOKEN": admin_token,
        "PUSHLINE_ADMIN_PORT": str(admin_port),
        "PUSHLINE_LOG_LEVEL": "DEBUG",
    }
    now = utc_now()
    # A sandbox app: its sends go to the emulators the run starts.
    await db.apps.insert_one(
        {
            "_id": APP,
            "account_id": ACCOUNT,
            "name": "Obs",
            "sandbox": True,
            "created": now,
            "updated": now,
        }
    )
    tokens = [f"fcm-token-{uuid.uuid4()}-{n}" for n in range(3)]
    commands = [register(token) for token in tokens]
    too_long = register("y" * 1025)
    leaked = f"fcm-token-{uuid.uuid4()}-malformed"

    with running(env):
        for command in (*commands, too_long):
            key = topics.device_key(APP, hash_token(command.token or ""))
            await publish(settings, topics.REGISTRATIONS, key, command)
        # A message the resolver cannot read, with a token in it: dead-lettered, not logged.
        malformed = json.dumps({"type": "register", "token": leaked}).encode()
        await publish_raw(settings, topics.REGISTRATIONS, b"bad", malformed)
        for command in (*commands, too_long):
            await eventually(
                lambda c=command: db.registrations.find_one({"_id": c.request_id})  # type: ignore[misc]
            )
        send = SendRequest(
            notification_id=f"n-{uuid.uuid4()}",
            account_id=ACCOUNT,
            app_id=APP,
            to=Audience(contact_ids=["contact-1"]),
            notification=Content(title="Observed"),
        )
        await publish(
            settings, topics.SEND_REQUESTS, topics.notification_key(send.notification_id), send
        )

        async def sent() -> bool:
            doc = await db.notifications.find_one({"_id": send.notification_id})
            return doc is not None and doc["state"] == "done"

        await eventually(sent, within=60)

        async with httpx.AsyncClient(timeout=5) as client:
            ingest = f"http://127.0.0.1:{ports['ingest']}"
            for _ in range(3):
                assert (await client.get(f"{ingest}/healthz")).status_code == 200
            await client.get(
                f"http://127.0.0.1:{admin_port}/admin/v1/accounts",
                headers={"Authorization": f"Bearer {admin_token}"},
            )

            # Every name of the dashboard and the rules is a family the live services expose.
            families: set[str] = set()
            for port in ports.values():
                families |= names.families_of(await scrape(client, port))
            assert names.dangling(names.used_names(), families) == set()

            # The resolver reports the lag of the partitions it reads, and its dead letter.
            async def resolver_reports() -> bool:
                text = await scrape(client, ports["resolver"])
                return (
                    'pushline_consumer_lag{partition="0",topic="push.registrations"}' in text
                    and 'pushline_dead_letters_total{topic="push.registrations"} 1.0' in text
                )

            await eventually(resolver_reports, within=30)

            # Prometheus scrapes all four, with the rules loaded, and answers PromQL.
            async def all_up() -> bool:
                response = await client.get(f"{prometheus}/api/v1/targets")
                targets = response.json()["data"]["activeTargets"]
                health = {t["labels"]["service"]: t["health"] for t in targets}
                return health == dict.fromkeys(SERVICES, "up")

            await eventually(all_up, within=30)
            rules = (await client.get(f"{prometheus}/api/v1/rules")).json()["data"]["groups"]
            assert sum(len(g["rules"]) for g in rules) == len(names.alert_rules())

            async def requests_counted() -> list[object] | None:
                promql = 'sum(pushline_ingest_requests_total{route="/healthz"})'
                result = await query(client, prometheus, promql)
                return result if result and float(result[0]["value"][1]) >= 3 else None  # type: ignore[index]

            await eventually(requests_counted, within=30)

            # The sends reach Prometheus, and the send rate the dashboard and alerts use
            # has a value (the series appears at its first sends, so the rate may be 0).
            async def sent_counted() -> list[object] | None:
                result = await query(client, prometheus, "sum(pushline_sends_total)")
                return result if result and float(result[0]["value"][1]) >= 3 else None  # type: ignore[index]

            await eventually(sent_counted, within=30)

            async def has_series(promql: str) -> list[object] | None:
                # An empty result is a PromQL answer too: wait for a series.
                return await query(client, prometheus, promql) or None

            promql = "sum(rate(pushline_sends_total[1m]))"
            await eventually(lambda: has_series(promql), within=30)
            # The lag the resolver reported reaches Prometheus too.
            promql = 'sum(pushline_consumer_lag{service="resolver", topic="push.registrations"})'
            await eventually(lambda: has_series(promql), within=30)

    logs = {name: (tmp_path / "logs" / f"{name}.log").read_text() for name in SERVICES}
    everything = "\n".join(logs.values())
    master_key = (tmp_path / "master.key").read_text()
    for secret in (master_key, admin_token, *tokens, too_long.token, leaked):
        assert secret
        assert secret not in everything
    # Ids are in the records' context: each decided registration names its request.
    decided = [
        json.loads(line)
        for line in logs["feedback"].splitlines()
        if line.startswith("{") and '"registration decided"' in line
    ]
    assert {entry["request_id"] for entry in decided} >= {c.request_id for c in commands}
