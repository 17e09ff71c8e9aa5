"""Entry point: `pushline emulators` or `python -m services.sandbox.emulators`.

Runs the three emulators on 127.0.0.1 until SIGTERM or SIGINT. Keys, the CA and what a
client needs to reach each emulator (`clients.json`) live in `$PUSHLINE_STATE_DIR/emulators`
and are reused on the next start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from services.core import eventloop
from services.core.process import start
from services.core.settings import Settings
from services.sandbox.emulators.apns import APNSEmulator
from services.sandbox.emulators.emulator import Emulator
from services.sandbox.emulators.fcm import FCMEmulator
from services.sandbox.emulators.keys import ec_key, pkcs8_pem, rsa_key, secret
from services.sandbox.emulators.webpush import WebPushEmulator, b64url

log = logging.getLogger(__name__)

HOST = "127.0.0.1"


def build(settings: Settings) -> list[tuple[Emulator, int]]:
    """The three emulators with their keys from the state directory, and their ports."""
    directory = settings.state_dir / "emulators"
    fcm = FCMEmulator(
        key=rsa_key(directory / "fcm-service-account-key.pem"),
        token_secret=secret(directory / "fcm-token-secret"),
    )
    apns = APNSEmulator(cert_dir=directory / "tls", key=ec_key(directory / "apns-key.p8"))
    webpush = WebPushEmulator(subscription_secret=secret(directory / "webpush-secret"))
    return [
        (fcm, settings.emulator_fcm_port),
        (apns, settings.emulator_apns_port),
        (webpush, settings.emulator_webpush_port),
    ]


def sandbox_vapid(settings: Settings) -> dict[str, str]:
    """VAPID credentials for sandbox apps that have none (a browser-bound subscription
    still needs the app's own key)."""
    key = ec_key(settings.state_dir / "emulators" / "sandbox-vapid.pem")
    public = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return {
        "vapid_private_key": pkcs8_pem(key),
        "vapid_public_key": b64url(public),
        "subject": "mailto:sandbox@pushline.invalid",
    }


def write_clients(settings: Settings, emulators: Sequence[Emulator]) -> Path:
    """Write `clients.json` under the state dir: how a sandbox app's sender reaches each
    of `emulators` (Web Push with the sandbox VAPID key). Returns its path."""
    clients = {emulator.provider: emulator.client_config() for emulator in emulators}
    clients["webpush"]["vapid"] = sandbox_vapid(settings)
    path = settings.state_dir / "emulators" / "clients.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clients, indent=2) + "\n")
    path.chmod(0o600)
    return path


async def serve(settings: Settings) -> None:
    """Start the emulators, write clients.json, and serve until a stop signal."""
    eventloop.report()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    emulators = build(settings)
    started: list[Emulator] = []
    try:
        for emulator, port in emulators:
            await emulator.start(HOST, port)
            started.append(emulator)
        path = write_clients(settings, started)
        log.info(
            "emulators listening",
            extra={"urls": {e.provider: e.url for e in started}, "clients": str(path)},
        )
        await stop.wait()
    finally:
        for emulator in started:
            await emulator.stop()


def run(settings: Settings) -> None:
    """Run the emulators until they are stopped."""
    asyncio.run(serve(settings))


if __name__ == "__main__":
    sys.exit(start("emulators", run))
