"""`make run`'s service script: starts all four, passes PUSHLINE_* through, stops them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from tests.integration import processes
from tests.stack import ROOT

pytestmark = pytest.mark.integration

SCRIPT = ROOT / "deploy/local/services.sh"
SERVICES = ("ingest", "resolver", "sender", "feedback")


def test_services_script_runs_every_service_with_the_callers_settings(
    child_env: dict[str, str], tmp_path: Path
) -> None:
    ports = {name: processes.free_port() for name in SERVICES}
    env = {
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
        for name, port in ports.items():
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
            assert ready.status_code == 200, name
            # PUSHLINE_LOG_LEVEL reached this service: it logs at DEBUG.
            log = (tmp_path / "logs" / f"{name}.log").read_text()
            assert '"level": "DEBUG"' in log, name

        master_key = (tmp_path / "master.key").read_text()
        assert len(master_key) >= 43
        assert (tmp_path / "master.key").stat().st_mode & 0o077 == 0
        for name in SERVICES:
            assert master_key not in (tmp_path / "logs" / f"{name}.log").read_text()

        again = subprocess.run(
            [str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=300
        )
        assert again.returncode == 0
        assert again.stderr.count("already runs") == 4
    finally:
        stopped = subprocess.run(
            [str(SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=120
        )
    assert stopped.returncode == 0, stopped.stderr
    for port in ports.values():
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    status = subprocess.run([str(SCRIPT), "status"], env=env, capture_output=True, text=True)
    assert status.stdout.count("stopped") == 4
