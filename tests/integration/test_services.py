"""Each service starts with its one command, connects, and stops cleanly on SIGTERM."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
from urllib.parse import urlsplit

import httpx
import pytest

from services.core.settings import Settings
from tests.integration import processes
from tests.integration.relay import Relay
from tests.stack import ROOT

pytestmark = pytest.mark.integration


async def test_all_four_services_start_answer_and_stop(child_env: dict[str, str]) -> None:
    ports = {name: processes.free_port() for name in ("ingest", "resolver", "sender", "feedback")}
    started = {}
    try:
        for name, port in ports.items():
            variable = "PUSHLINE_INGEST_PORT" if name == "ingest" else "PUSHLINE_METRICS_PORT"
            env = {**child_env, variable: str(port)}
            started[name] = processes.Process(["services.cli", name], env)
        for name, service in started.items():
            base = f"http://127.0.0.1:{ports[name]}"
            health = await service.wait_ready(f"{base}/healthz")
            assert health.json()["status"] == "ok"
            ready = await service.wait_ready(f"{base}/readyz")
            assert ready.json() == {"status": "ready", "store": True, "kafka": True}
            metrics = await service.wait_ready(f"{base}/metrics")
            assert "text/plain" in metrics.headers["content-type"]
            # services.core.eventloop: the loop the running service reports is uvloop's.
            assert 'pushline_event_loop_info{loop="uvloop"} 1.0' in metrics.text, name
        for name, service in started.items():
            # uvicorn re-raises SIGTERM after its graceful shutdown; SIGKILL means it hung.
            code = service.stop()
            assert code in (0, -signal.SIGTERM), f"{name} did not stop:\n{service.output()}"
    finally:
        for service in started.values():
            service.close()


async def test_ingest_is_unready_when_the_store_does_not_answer(
    child_env: dict[str, str], settings: Settings
) -> None:
    store = urlsplit(settings.mongodb_uri)
    assert store.port is not None
    port = processes.free_port()
    readyz = f"http://127.0.0.1:{port}/readyz"
    async with Relay(store.port) as relay:
        # The ingest reaches the store through the relay: cutting it stops the store
        # answering this ingest alone.
        through = store._replace(netloc=f"127.0.0.1:{relay.port}").geturl()
        env = {**child_env, "PUSHLINE_INGEST_PORT": str(port), "PUSHLINE_MONGODB_URI": through}
        ingest = processes.Process(["services.cli", "ingest"], env)
        try:
            ready = await ingest.wait_ready(readyz)
            assert ready.json() == {"status": "ready", "store": True, "kafka": True}
            await relay.cut()
            async with httpx.AsyncClient(timeout=10.0) as client:
                unready = await client.get(readyz)
            assert (unready.status_code, unready.json()) == (
                503,
                {"status": "unready", "store": False, "kafka": True},
            ), ingest.output()
            assert ingest.popen.poll() is None, ingest.output()
        finally:
            ingest.close()


def test_a_bad_setting_stops_the_command_with_a_clear_message() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "ingest"],
        cwd=ROOT,
        env={"PUSHLINE_KAFKA_BOOTSTRAP": "kafka:notaport", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "PUSHLINE_KAFKA_BOOTSTRAP" in result.stderr
    assert "kafka:notaport" in result.stderr
    assert "Traceback" not in result.stderr


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # Should a service start after all, it finds nothing to connect to and no port in use.
    nowhere = {
        "PUSHLINE_KAFKA_BOOTSTRAP": f"127.0.0.1:{processes.free_port()}",
        "PUSHLINE_MONGODB_URI": f"mongodb://127.0.0.1:{processes.free_port()}/nowhere",
        "PUSHLINE_INGEST_PORT": str(processes.free_port()),
        "PUSHLINE_METRICS_PORT": str(processes.free_port()),
    }
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **nowhere, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("command", ["check-config", "ingest", "sender"])
def test_a_guessable_master_key_stops_the_command_and_says_how_to_make_one(command: str) -> None:
    result = _cli(command, PUSHLINE_MASTER_KEY="short")
    assert result.returncode == 2
    assert "PUSHLINE_MASTER_KEY: Value error, must be at least 32 random bytes" in result.stderr
    assert "openssl rand -base64 32" in result.stderr
    assert "short" not in result.stderr
    assert result.stdout == ""


def test_check_config_says_so_when_the_configuration_is_valid() -> None:
    # As `make run` generates one: 32 random bytes, base64url without padding.
    key = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    result = _cli("check-config", PUSHLINE_MASTER_KEY=key)
    assert (result.returncode, result.stdout) == (0, "pushline: the configuration is valid\n")
    assert key not in result.stderr


async def test_the_ingest_serves_the_admin_api_on_its_own_listener_and_stops_both(
    child_env: dict[str, str],
) -> None:
    public_port, admin_port = processes.free_port(), processes.free_port()
    env = {
        **child_env,
        "PUSHLINE_INGEST_PORT": str(public_port),
        "PUSHLINE_ADMIN_PORT": str(admin_port),
        "PUSHLINE_ADMIN_TOKEN": "admin-secret",
        "PUSHLINE_MASTER_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
    }
    public, admin = f"http://127.0.0.1:{public_port}", f"http://127.0.0.1:{admin_port}"
    token = {"Authorization": "Bearer admin-secret"}
    ingest = processes.Process(["services.cli", "ingest"], env)
    try:
        await ingest.wait_ready(f"{public}/readyz")
        health = await ingest.wait_ready(f"{admin}/healthz")
        assert health.json() == {"status": "ok"}
        async with httpx.AsyncClient(timeout=10.0) as http:
            refused = await http.post(
                f"{public}/admin/v1/accounts", json={"name": "E"}, headers=token
            )
            assert refused.status_code == 404
            assert refused.headers["content-type"] == "application/problem+json"
            created = await http.post(
                f"{admin}/admin/v1/accounts", json={"name": "E"}, headers=token
            )
            assert created.status_code == 201, created.text
            # The key the admin listener issued works on the public one.
            api_key = created.json()["api_key"]
            listed = await http.get(
                f"{public}/v1/apps", headers={"Authorization": f"Bearer {api_key}"}
            )
            assert listed.status_code == 200, listed.text
            document = (await http.get(f"{admin}/openapi.json")).json()
            assert document["info"]["title"] == "Pushline admin"
            assert (await http.get(f"{admin}/v1/apps")).status_code == 404
        # One SIGTERM stops both listeners, each after its graceful shutdown.
        assert ingest.stop() == 0, ingest.output()
        assert ingest.output().count("Application shutdown complete.") == 2, ingest.output()
    finally:
        ingest.close()
