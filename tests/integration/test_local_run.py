"""`make run`'s service script: starts all four, passes PUSHLINE_* through, stops them."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.integration import processes
from tests.integration.kafka_io import eventually
from tests.stack import ROOT

pytestmark = pytest.mark.integration

SCRIPT = ROOT / "deploy/local/services.sh"
SERVICES = ("ingest", "resolver", "sender", "feedback")
EMULATORS = ("FCM", "APNS", "WEBPUSH")


def test_services_script_runs_every_service_with_the_callers_settings(
    child_env: dict[str, str], tmp_path: Path
) -> None:
    ports = {name: processes.free_port() for name in SERVICES}
    emulator_ports = {name: processes.free_port() for name in EMULATORS}
    env = {
        **{f"PUSHLINE_EMULATOR_{name}_PORT": str(p) for name, p in emulator_ports.items()},
        **child_env,
        "PUSHLINE_STATE_DIR": str(tmp_path),
        "PUSHLINE_INGEST_PORT": str(ports["ingest"]),
        "PUSHLINE_LOG_LEVEL": "DEBUG",
        "RESOLVER_PORT": str(ports["resolver"]),
        "SENDER_PORT": str(ports["sender"]),
        "FEEDBACK_PORT": str(ports["feedback"]),
    }
    try:
        started = subprocess.run(
            [str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=300
        )
        assert started.returncode == 0, started.stderr
        assert f"http://127.0.0.1:{ports['ingest']}" in started.stdout
        # The sandbox demo: an app id, a key, and the commands to try.
        assert "Sandbox app: demo-app" in started.stdout
        assert "API key (shown once): pl_" in started.stdout
        assert started.stdout.count("curl -s") == 3
        for name, port in ports.items():
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
            assert ready.status_code == 200, name
            # PUSHLINE_LOG_LEVEL reached this service: it logs at DEBUG.
            log = (tmp_path / "logs" / f"{name}.log").read_text()
            assert '"level": "DEBUG"' in log, name

        asyncio.run(_try_the_sandbox_as_printed(started.stdout, ports["ingest"], env))

        # The development secrets: generated once, the owner's only, never logged; the
        # admin API answers the generated token.
        secrets = [(tmp_path / name).read_text() for name in ("master.key", "admin.token")]
        for name in ("master.key", "admin.token"):
            assert (tmp_path / name).stat().st_mode & 0o077 == 0
        assert all(len(secret) >= 43 for secret in secrets)
        for name in SERVICES:
            log = (tmp_path / "logs" / f"{name}.log").read_text()
            assert not any(secret in log for secret in secrets), name
        admin = httpx.get(
            f"http://127.0.0.1:{ports['ingest']}/admin/v1/apps/demo-app",
            headers={"Authorization": f"Bearer {secrets[1]}"},
            timeout=5,
        )
        assert admin.status_code == 200, admin.text

        again = subprocess.run(
            [str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=300
        )
        assert again.returncode == 0
        assert again.stderr.count("already runs") == 5
    finally:
        stopped = subprocess.run(
            [str(SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=120
        )
    assert stopped.returncode == 0, stopped.stderr
    for port in ports.values():
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    status = subprocess.run([str(SCRIPT), "status"], env=env, capture_output=True, text=True)
    assert status.stdout.count("stopped") == 5


async def _try_the_sandbox_as_printed(printed: str, port: int, env: dict[str, str]) -> None:
    """Register, send and read back, as the printed commands do, and find the notification
    in the emulators' inbox."""
    api_key = re.search(r"API key \(shown once\): (\S+)", printed)
    assert api_key is not None
    headers = {"Authorization": f"Bearer {api_key.group(1)}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers) as http:
        registered = await http.post(
            "/v1/apps/demo-app/devices",
            json={"platform": "android", "token": "demo-device-1", "contact_id": "demo-user"},
        )
        assert registered.status_code == 202, registered.text
        registration = registered.json()["registration_id"]

        async def stored() -> bool:
            answer = await http.get(f"/v1/registrations/{registration}")
            return bool(answer.json()["status"] == "Success")

        await eventually(stored)
        sent = await http.post(
            "/v1/notifications",
            json={
                "app_id": "demo-app",
                "to": {"contact_ids": ["demo-user"]},
                "notification": {"title": "Hello", "body": "From Pushline"},
            },
        )
        assert sent.status_code == 202, sent.text

        async def done() -> dict[str, object] | None:
            answer = (await http.get(f"/v1/notifications/{sent.json()['id']}")).json()
            return answer if answer["state"] == "done" else None

        notification = await eventually(done, within=60)
        assert notification["counters"]["sent"] == 1  # type: ignore[index]
    inbox = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.cli", "sandbox", "inbox"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert inbox.returncode == 0, inbox.stderr
    received = json.loads(inbox.stdout)["fcm"]
    assert [r["payload"]["message"]["notification"]["title"] for r in received] == ["Hello"]
