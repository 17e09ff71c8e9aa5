"""A worker's Kafka consumer asks the broker to hold a fetch briefly (services.core.fetching)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from services.core.fetching import FETCH_WAIT_MS, Transport
from services.core.settings import Settings
from services.core.worker import StreamApp


async def test_a_worker_consumer_fetches_with_the_short_wait(tmp_path: Path) -> None:
    app = StreamApp("pushline-fetch-test", Settings(state_dir=tmp_path), 9199)
    assert isinstance(app.transport, Transport)
    # The consumer Faust makes for the transport; its thread makes the Kafka consumer.
    thread = cast(Any, app.consumer)._thread
    consumer = thread._create_worker_consumer(app.transport)
    try:
        assert consumer._fetch_max_wait_ms == FETCH_WAIT_MS
    finally:
        await consumer.stop()
        # Made for the consumer's thread, which never started here.
        thread.thread_loop.close()
