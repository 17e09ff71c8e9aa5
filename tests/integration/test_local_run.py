"""`make run`'s service script: starts all four, passes PUSHLINE_* through, stops them."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

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
    admin_port = processes.free_port()
    env = {
        **{f"PUSHLINE_EMULATOR_{name}_PORT": str(p) for name, p in emulator_ports.items()},
        **child_env,
        "PUSHLINE_STATE_DIR": str(tmp_path),
        "PUSHLINE_INGEST_PORT": str(ports["ingest"]),
        "PUSHLINE_ADMIN_PORT": str(admin_port),
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
        assert f"Admin API: http://127.0.0.1:{admin_port}" in started.stdout
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
        # admin API answers the generated token, on its own listener only.
        secrets = [(tmp_path / name).read_text() for name in ("master.key", "admin.token")]
        for name in ("master.key", "admin.token"):
            assert (tmp_path / name).stat().st_mode & 0o077 == 0
        assert all(len(secret) >= 43 for secret in secrets)
        for name in SERVICES:
            log = (tmp_path / "logs" / f"{name}.log").read_text()
            assert not any(secret in log for secret in secrets), name
        for port, expected in ((admin_port, 200), (ports["ingest"], 404)):
            admin = httpx.get(
                f"http://127.0.0.1:{port}/admin/v1/apps/demo-app",
                headers={"Authorization": f"Bearer {secrets[1]}"},
                timeout=5,
            )
            assert admin.status_code == expected, admin.text

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
    for port in (*ports.values(), admin_port):
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    status = subprocess.run([str(SCRIPT), "status"], env=env, capture_output=True, text=True)
    assert status.stdout.count("stopped") == 5


async def _try_the_sandbox_as_printed(printed: str, port: int, env: dict[str, str]) -> None:
    """Paste the printed steps 1 and 2 at once, read the state as step 3 says, and find
    the notification in the emulators' inbox."""
    register, send, read = _commands(printed)
    assert f"http://127.0.0.1:{port}/" in register
    # Pasted together: the send runs the moment the registration answers.
    pasted = await asyncio.to_thread(
        subprocess.run,
        ["sh", "-c", f"{register}\n{send}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert pasted.returncode == 0, pasted.stderr
    decoder = json.JSONDecoder()
    registered, end = decoder.raw_decode(pasted.stdout)
    sent, _ = decoder.raw_decode(pasted.stdout[end:].lstrip())
    assert registered["status"] == "Success", pasted.stdout
    read = read.replace("ID_FROM_STEP_2", sent["id"])

    async def done() -> dict[str, Any] | None:
        answer = await asyncio.to_thread(
            subprocess.run, ["sh", "-c", read], capture_output=True, text=True, timeout=30
        )
        shown: dict[str, Any] = json.loads(answer.stdout)
        return shown if shown["state"] == "done" else None

    notification = await eventually(done, within=60)
    assert (notification["counters"]["targeted"], notification["counters"]["sent"]) == (1, 1)
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


def _commands(printed: str) -> list[str]:
    """The printed shell commands, each with its continuation lines."""
    commands: list[str] = []
    lines: list[str] = []
    for line in printed.splitlines():
        if line.lstrip().startswith("curl ") or lines:
            lines.append(line)
            if not line.endswith("\\"):
                commands.append("\n".join(lines))
                lines = []
    return commands
