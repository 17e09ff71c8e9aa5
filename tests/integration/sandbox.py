"""The provider emulators, running in a thread of the test, as a sandbox app's sender
finds them."""

from __future__ import annotations

from pathlib import Path

from services.emulators import APNSEmulator, EmulatorThread, FCMEmulator, WebPushEmulator


class Emulators:
    def __init__(self, cert_dir: Path) -> None:
        self.fcm = FCMEmulator()
        self.apns = APNSEmulator(cert_dir=cert_dir, record_limit=50_000)
        self.webpush = WebPushEmulator()
        self.thread = EmulatorThread(self.fcm, self.apns, self.webpush)
