"""Entry point: `pushline emulators` or `python -m services.sandbox.emulators`.

Runs the three emulators on 127.0.0.1 until SIGTERM or SIGINT. Their keys and CA live in
`$PUSHLINE_STATE_DIR/emulators` and are reused on the next start; while they run,
`sandbox.env` there holds the `PUSHLINE_SANDBOX_*` settings that point the services at
them (`services.sandbox.environment`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

from services.core import eventloop
from services.core.process import start
from services.core.settings import Settings
from services.sandbox import environment
from services.sandbox.emulators.apns import APNSEmulator
from services.sandbox.emulators.emulator import Emulator
from services.sandbox.emulators.fcm import FCMEmulator
from services.sandbox.emulators.keys import ec_key, rsa_key, secret
from services.sandbox.emulators.settings import sandbox_settings
from services.sandbox.emulators.webpush import WebPushEmulator

log = logging.getLogger(__name__)

HOST = "127.0.0.1"


def build(directory: Path) -> tuple[FCMEmulator, APNSEmulator, WebPushEmulator]:
    """The three emulators, with their keys from `directory`."""
    return (
        FCMEmulator(
            key=rsa_key(directory / "fcm-service-account-key.pem"),
            token_secret=secret(directory / "fcm-token-secret"),
        ),
        APNSEmulator(cert_dir=directory / "tls", key=ec_key(directory / "apns-key.p8")),
        WebPushEmulator(subscription_secret=secret(directory / "webpush-secret")),
    )


async def serve(settings: Settings) -> None:
    """Start the emulators, write the sandbox's settings, and serve until a stop signal."""
    eventloop.report()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    fcm, apns, webpush = build(settings.state_dir / "emulators")
    ports = {
        fcm: settings.emulator_fcm_port,
        apns: settings.emulator_apns_port,
        webpush: settings.emulator_webpush_port,
    }
    started: list[Emulator] = []
    try:
        for emulator, port in ports.items():
            await emulator.start(HOST, port)
            started.append(emulator)
        sandbox = sandbox_settings(fcm, apns, webpush, settings.state_dir / "emulators")
        path = environment.write(settings.state_dir, sandbox)
        log.info(
            "emulators listening",
            extra={"urls": {e.provider: e.url for e in started}, "sandbox": str(path)},
        )
        try:
            await stop.wait()
        finally:
            # Services started from now on find no emulators, rather than stopped ones.
            environment.remove(settings.state_dir)
    finally:
        for emulator in started:
            await emulator.stop()


def run(settings: Settings) -> None:
    """Run the emulators until they are stopped."""
    asyncio.run(serve(settings))


if __name__ == "__main__":
    sys.exit(start("emulators", run))
