"""`pushline emulators` starts all three, keeps its keys, and stops on SIGTERM."""

from __future__ import annotations

import json
import os
import ssl
from pathlib import Path

import httpx
import pytest

from tests.integration import processes


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
        clients = json.loads((tmp_path / "emulators" / "clients.json").read_text())
        assert set(clients) == {"fcm", "apns", "webpush"}
        context = ssl.create_default_context(cafile=clients["apns"]["ca_file"])
        async with httpx.AsyncClient(http2=True, verify=context) as client:
            answer = await client.get(f"https://127.0.0.1:{ports['apns']}/_emulator/config")
        assert answer.json()["key"] == clients["apns"]["key"]
        assert '"event_loop": "uvloop"' in emulators.output()
        # Process.stop() sends SIGTERM; the emulators stop cleanly with status 0.
        code = emulators.stop()
        assert code == 0, emulators.output()
    finally:
        emulators.close()
    # A second start reuses the keys and the CA its clients already trust.
    emulators = processes.Process(module.split(), env)
    try:
        await emulators.wait_ready(f"http://127.0.0.1:{ports['webpush']}/_emulator/config")
        again = json.loads((tmp_path / "emulators" / "clients.json").read_text())
        assert again == clients
        assert emulators.stop() == 0
    finally:
        emulators.close()
