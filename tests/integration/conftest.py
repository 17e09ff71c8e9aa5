"""Fixtures of the pipeline tests: Pushline's workers running as real processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from services.core import kafka
from services.core.settings import Settings
from services.ingest.app import create_app
from tests.integration import processes
from tests.integration.pipeline import Emulators, Pipeline, running_pipeline


@pytest.fixture
async def created_topics(settings: Settings) -> None:
    """The test namespace's topics, created as a service would at start-up."""
    await kafka.ensure_topics(settings)


@pytest.fixture
async def workers(child_env: dict[str, str]) -> AsyncIterator[None]:
    """The resolver and feedback services, running in the test's namespace and store."""
    started = []
    try:
        for name in ("resolver", "feedback"):
            port = processes.free_port()
            env = {
                **child_env,
                "PUSHLINE_METRICS_PORT": str(port),
                "PUSHLINE_WEBHOOK_ALLOW_PRIVATE": "true",
            }
            service = processes.Process(["services.cli", name], env)
            started.append(service)
            await service.wait_ready(f"http://127.0.0.1:{port}/readyz")
        yield
    finally:
        for service in started:
            service.close()


@pytest.fixture
async def ingest(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client to the ingest app in this process, its lifespan running."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as http:
            yield http


@pytest.fixture
def emulators(tmp_path: Path) -> Iterator[Emulators]:
    running = Emulators(tmp_path / "tls")
    with running.thread:
        running.point(tmp_path / "state")
        yield running


@pytest.fixture
async def pipeline(child_env: dict[str, str], emulators: Emulators) -> AsyncIterator[Pipeline]:
    """The three workers, the sandbox pointed at the emulators."""
    async with running_pipeline({**child_env, **emulators.env}) as running:
        yield running
