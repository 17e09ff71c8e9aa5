"""An emulator's own capacity: `pushline emulators` as a process of its own, driven by a
lean client for one provider, with the emulator process's CPU time read from /proc.

    python -m bench.load fcm|apns|webpush [--requests N] [--concurrency C] [--runs R]

The clients do as little as their protocol allows, so that the emulator, not the client,
is what is measured: FCM over aiohttp with one OAuth token fetched through google-auth;
APNs through libcurl's HTTP/2 (the sender's client, `curl.Multi`; one provider JWT signed
once and reused, as Apple asks); Web Push over aiohttp with a VAPID header signed once and
bodies encrypted (RFC 8291) for a few subscriptions before the clock starts. On a machine
that the client shares with the emulator the rate is bound by both; the emulator's CPU
seconds per 1,000 requests say what it alone costs (1,000 / that figure is what one core
of it serves).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from google.auth.transport.requests import Request
from google.oauth2 import service_account
from py_vapid import Vapid02
from pywebpush import WebPusher

from bench.harness import cpu_seconds, free_port
from services.core.providers import curl
from services.core.settings import APNSSandbox, FCMSandbox, SandboxSettings, WebPushSandbox
from services.sandbox import environment

PROVIDERS = ("fcm", "apns", "webpush")
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
# Subscriptions the Web Push load cycles through, each with its own encrypted body.
SUBSCRIPTIONS = 16
WARM_UP = 200
# One send: returns the HTTP status.
Send = Callable[[int], Awaitable[int]]


class EmulatorProcess:
    """`pushline emulators` on free ports with a state directory of its own."""

    def __init__(self, state: Path) -> None:
        self.ports = {provider: free_port() for provider in PROVIDERS}
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PUSHLINE_")},
            "PUSHLINE_STATE_DIR": str(state),
            "PUSHLINE_LOG_LEVEL": "WARNING",
            **{f"PUSHLINE_EMULATOR_{p.upper()}_PORT": str(port) for p, port in self.ports.items()},
        }
        self._state = state
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "emulators"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def sandbox(self) -> SandboxSettings:
        """Where the emulators are and the credentials they take, once they listen."""
        deadline = time.monotonic() + 60
        while not environment.path(self._state).exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("pushline emulators did not start")
            time.sleep(0.1)
        return environment.read(self._state)

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


async def _fcm(emulator: FCMSandbox, http: aiohttp.ClientSession) -> Send:
    account = emulator.credentials.service_account
    # google-auth leaves this constructor untyped.
    credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
        account, scopes=[FCM_SCOPE]
    )
    await asyncio.to_thread(credentials.refresh, Request())
    url = f"{emulator.endpoint}/v1/projects/{account['project_id']}/messages:send"
    headers = {"Authorization": f"Bearer {credentials.token}"}

    async def send(index: int) -> int:
        body = {
            "message": {
                "token": f"load-{index}",
                "notification": {"title": "Load", "body": "One of many"},
                "data": {"notification_id": "load"},
            }
        }
        async with http.post(url, json=body, headers=headers) as answer:
            await answer.read()
            return answer.status

    return send


async def _apns(emulator: APNSSandbox, clients: list[curl.Multi]) -> Send:
    apns = emulator.credentials
    ca = await asyncio.to_thread(emulator.ca_file.read_bytes)
    client = curl.Multi(ca, connections=4, timeout=30.0)
    clients.append(client)
    token = jwt.encode(
        {"iss": apns.team_id, "iat": int(time.time())},
        apns.private_key,
        algorithm="ES256",
        headers={"kid": apns.key_id},
    )
    headers = [
        f"authorization: bearer {token}",
        f"apns-topic: {apns.topic}",
        "apns-push-type: alert",
        "apns-priority: 10",
    ]
    body = json.dumps({"aps": {"alert": "One of many"}}).encode()

    async def send(index: int) -> int:
        url = f"{emulator.endpoint}/3/device/{index:064x}"
        return (await client.post(url, headers, body)).status

    return send


async def _webpush(emulator: WebPushSandbox, http: aiohttp.ClientSession) -> Send:
    vapid = Vapid02.from_pem(emulator.credentials.vapid_private_key.encode())
    claims = {"sub": emulator.credentials.subject, "aud": emulator.endpoint}
    authorization = vapid.sign(claims)["Authorization"]
    pushes = []
    for _ in range(SUBSCRIPTIONS):
        async with http.post(f"{emulator.endpoint}/_emulator/subscriptions", json={}) as answer:
            subscription = await answer.json()
        encoded = WebPusher(subscription).encode(b'{"title": "Load", "body": "One of many"}')
        headers = {
            "Authorization": authorization,
            "TTL": "60",
            "Content-Encoding": "aes128gcm",
        }
        pushes.append((subscription["endpoint"], headers, bytes(encoded["body"])))

    async def send(index: int) -> int:
        endpoint, headers, body = pushes[index % len(pushes)]
        async with http.post(endpoint, data=body, headers=headers) as answer:
            await answer.read()
            return answer.status

    return send


async def _drive(send: Send, requests: int, concurrency: int) -> Counter[int]:
    statuses: Counter[int] = Counter()
    cursor = iter(range(requests))

    async def worker() -> None:
        for index in cursor:
            statuses[await send(index)] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


async def measure(provider: str, requests: int, concurrency: int) -> dict[str, Any]:
    """One run: a fresh emulator process, a warm-up, then `requests` sends."""
    with tempfile.TemporaryDirectory() as tmp:
        emulators = EmulatorProcess(Path(tmp))
        apns_clients: list[curl.Multi] = []
        try:
            sandbox = emulators.sandbox()
            connector = aiohttp.TCPConnector(limit=concurrency)
            async with aiohttp.ClientSession(connector=connector) as http:
                if provider == "fcm" and sandbox.fcm is not None:
                    send = await _fcm(sandbox.fcm, http)
                elif provider == "apns" and sandbox.apns is not None:
                    send = await _apns(sandbox.apns, apns_clients)
                elif sandbox.webpush is not None:
                    send = await _webpush(sandbox.webpush, http)
                else:
                    raise RuntimeError(f"pushline emulators runs no {provider} emulator")
                await _drive(send, WARM_UP, concurrency)
                cpu, client_cpu = emulators.cpu(), cpu_seconds(os.getpid())
                started = time.perf_counter()
                statuses = await _drive(send, requests, concurrency)
                seconds = time.perf_counter() - started
                cpu, client_cpu = emulators.cpu() - cpu, cpu_seconds(os.getpid()) - client_cpu
        finally:
            for client in apns_clients:
                client.close()
            emulators.stop()
    return {
        "provider": provider,
        "requests": requests,
        "statuses": dict(statuses),
        "per_second": round(requests / seconds, 1),
        "emulator_cpu_seconds_per_1000": round(cpu * 1000 / requests, 3),
        "client_cpu_seconds_per_1000": round(client_cpu * 1000 / requests, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("provider", choices=PROVIDERS)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = [
        asyncio.run(measure(args.provider, args.requests, args.concurrency))
        for _ in range(args.runs)
    ]
    for run in runs:
        print(json.dumps(run), flush=True)
    summary = {
        "provider": args.provider,
        "median_per_second": statistics.median(r["per_second"] for r in runs),
        "median_emulator_cpu_seconds_per_1000": statistics.median(
            r["emulator_cpu_seconds_per_1000"] for r in runs
        ),
        "median_client_cpu_seconds_per_1000": statistics.median(
            r["client_cpu_seconds_per_1000"] for r in runs
        ),
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
