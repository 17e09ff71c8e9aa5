"""EmulatorThread starts and stops emulators on a loop of their own."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import httpx
import pytest

from services.sandbox.emulators import APNSEmulator, EmulatorThread, FCMEmulator, WebPushEmulator


def test_all_three_start_on_free_ports_and_stop(tmp_path: Path) -> None:
    fcm, apns, webpush = FCMEmulator(), APNSEmulator(cert_dir=tmp_path), WebPushEmulator()
    with EmulatorThread(fcm, apns, webpush):
        urls = {fcm.url, apns.url, webpush.url}
        assert len(urls) == 3
        assert httpx.get(f"{fcm.url}/_emulator/config").json()["project_id"] == fcm.project_id
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{fcm.url}/_emulator/config")


def test_the_thread_is_named_for_cpu_accounting() -> None:
    emulators = EmulatorThread(WebPushEmulator())
    assert emulators.native_id is None
    with emulators:
        assert emulators.native_id not in (None, threading.get_native_id())
        assert Path(f"/proc/self/task/{emulators.native_id}/stat").exists()


def test_a_busy_port_fails_the_start() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OSError, match="in use"):
            EmulatorThread(WebPushEmulator(), ports=[port]).start()
