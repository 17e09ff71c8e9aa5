"""`pushline emulators` starts all three, says where they are in the sandbox's settings
while they run, keeps its keys, and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import ssl
from pathlib import Path

import httpx
import pytest

from services.core.settings import SandboxSettings
from services.sandbox import environment
from tests.integration import processes


async def sandbox(state_dir: Path) -> SandboxSettings:
    """The settings the emulators write once all three listen."""
    for _ in range(100):
        if environment.path(state_dir).exists():
            return environment.read(state_dir)
        await asyncio.sleep(0.1)
    raise AssertionError("the emulators wrote no sandbox settings")


@pytest.mark.parametrize("module", ["services.cli emulators", "services.sandbox.emulators"])
async def test_the_command_serves_all_three(tmp_path: Path, module: str) -> None:
    ports = {name: processes.free_port() for name in ("fcm", "apns", "webpush")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHLINE_")}
    env.update(
        PUSHLINE_STATE_DIR=str(tmp_path),
        PUSHLINE_EMULATOR_FCM_PORT=str(ports["fcm"]),
        PUSHLINE_EMULATOR_APNS_PORT=str(ports["apns"]),
        PUSHLINE_EMULATOR_WEBPUSH_PORT=str(ports["webpush"]),
    )
    emulators = processes.Process(module.split(), env)
    try:
        fcm = await emulators.wait_ready(f"http://127.0.0.1:{ports['fcm']}/_emulator/config")
        assert fcm.json()["service_account"]["token_uri"].endswith(f":{ports['fcm']}/token")
        await emulators.wait_ready(f"http://127.0.0.1:{ports['webpush']}/_emulator/config")
        first = await sandbox(tmp_path)
        assert first.fcm is not None
        assert first.apns is not None
        assert first.webpush is not None
        assert first.fcm.endpoint == f"http://127.0.0.1:{ports['fcm']}"
        assert first.webpush.endpoint == f"http://127.0.0.1:{ports['webpush']}"
        context = ssl.create_default_context(cafile=first.apns.ca_file)
        async with httpx.AsyncClient(http2=True, verify=context) as client:
            answer = await client.get(f"{first.apns.endpoint}/_emulator/config")
        assert answer.json()["key"] == first.apns.credentials.private_key
        assert '"event_loop": "uvloop"' in emulators.output()
        # Process.stop() sends SIGTERM; the emulators stop cleanly with status 0.
        code = emulators.stop()
        assert code == 0, emulators.output()
        # Services started after this find no emulators rather than stopped ones.
        assert not environment.path(tmp_path).exists()
    finally:
        emulators.close()
    # A second start reuses the keys and the CA its clients already trust.
    emulators = processes.Process(module.split(), env)
    try:
        await emulators.wait_ready(f"http://127.0.0.1:{ports['webpush']}/_emulator/config")
        assert await sandbox(tmp_path) == first
        assert emulators.stop() == 0
    finally:
        emulators.close()
