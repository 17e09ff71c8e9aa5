"""Emulators of FCM, APNs and Web Push that speak the providers' real protocols.

In-process use (tests, benchmarks)::

    fcm, apns, webpush = FCMEmulator(), APNSEmulator(cert_dir=tmp), WebPushEmulator()
    with EmulatorThread(fcm, apns, webpush):
        fcm.controls.mark(["token"], TokenState.UNREGISTERED)
        ...
        fcm.controls.records()

`pushline emulators` runs all three as a process; see `services.emulators.__main__`.
"""
