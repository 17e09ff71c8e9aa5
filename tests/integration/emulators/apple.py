"""aioapns pointed at the APNs emulator."""

from __future__ import annotations

import asyncio
import ssl

from aioapns import APNs
from aioapns.connection import APNsTLSClientProtocol

from services.sandbox.emulators.apns import APNSEmulator


def apns_client(apns: APNSEmulator, *, key: str | None = None, key_id: str | None = None) -> APNs:
    """An aioapns client for the emulator's team and topic, trusting the emulator's CA.

    aioapns takes host and port from class attributes of its protocol class, so a subclass
    set as the pool's `protocol_class` reaches the emulator.
    """

    class EmulatorProtocol(APNsTLSClientProtocol):
        APNS_SERVER = apns.host
        APNS_PORT = apns.port

    context = ssl.create_default_context(cafile=str(apns.tls.ca_file))
    context.set_alpn_protocols(["h2"])
    client = APNs(
        key=key or apns.key_pem,
        key_id=key_id or apns.key_id,
        team_id=apns.team_id,
        topic=apns.topics[0],
        ssl_context=context,
    )
    client.pool.protocol_class = EmulatorProtocol
    return client


async def close_client(client: APNs) -> None:
    """Close the client's connections and wait until they are gone.

    `pool.close()` only starts closing the TLS transports; a test that ended right away
    would leave them to the garbage collector.
    """
    client.pool.close()
    for _ in range(200):
        if not client.pool.connections:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("aioapns connections did not close")
