"""Emulators of FCM, APNs and Web Push that speak the providers' real protocols.

In-process use (tests, benchmarks)::

    fcm, apns, webpush = FCMEmulator(), APNSEmulator(cert_dir=tmp), WebPushEmulator()
    with EmulatorThread(fcm, apns, webpush):
        fcm.controls.mark(["token"], TokenState.UNREGISTERED)
        ...
        fcm.controls.records()

`pushline emulators` runs all three as a process; see `services.emulators.__main__`.
"""

from services.emulators.apns import APNSEmulator
from services.emulators.emulator import Emulator
from services.emulators.fcm import FCMEmulator
from services.emulators.runner import EmulatorThread
from services.emulators.state import Controls, Record, TokenState
from services.emulators.webpush import WebPushEmulator

__all__ = [
    "APNSEmulator",
    "Controls",
    "Emulator",
    "EmulatorThread",
    "FCMEmulator",
    "Record",
    "TokenState",
    "WebPushEmulator",
]
