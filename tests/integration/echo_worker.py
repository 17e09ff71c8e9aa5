"""A stream worker for the foundation test: copies each registration it reads into the store.

Run as `python -m tests.integration.echo_worker APP_ID TOPIC`, with PUSHLINE_* set.
"""

from __future__ import annotations

import sys

import faust

from services.core import topics
from services.core.events import RegisterDevice
from services.core.kafka import decode
from services.core.settings import load_settings
from services.core.worker import StreamApp, run_worker


def main(app_id: str, topic: str) -> None:
    app = StreamApp(app_id, load_settings(), metrics_port=0)

    @app.agent(app.topic(topic, value_serializer="raw"))
    async def echo(stream: faust.StreamT[bytes]) -> None:
        async for value in stream:
            message = decode(topics.REGISTRATIONS, value)
            assert isinstance(message, RegisterDevice)
            await app.db.echoed.insert_one({"request_id": message.request_id})

    run_worker(app)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
