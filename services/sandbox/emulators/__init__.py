"""Emulators of FCM, APNs and Web Push that speak the providers' real protocols.

In-process use (tests, benchmarks)::

    fcm, apns, webpush = FCMEmulator(), APNSEmulator(cert_dir=tmp), WebPushEmulator()
    with EmulatorThread(fcm, apns, webpush):
        fcm.controls.mark(["token"], TokenState.UNREGISTERED)
        ...
        fcm.controls.records()

`pushline emulators` runs all three as a process; see `services.sandbox.emulators.__main__`.
"""

from services.sandbox.emulators.apns import APNSEmulator
from services.sandbox.emulators.emulator import Emulator
from services.sandbox.emulators.fcm import FCMEmulator
from services.sandbox.emulators.runner import EmulatorThread
from services.sandbox.emulators.state import Controls, Record, TokenState
from services.sandbox.emulators.webpush import WebPushEmulator

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
