"""The ingest's ASGI app: health, readiness, metrics, and the API routers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.routing import Match

from services.core import kafka, metrics, topics
from services.core.errors import KafkaUnavailableError
from services.core.health import Readiness
from services.core.secrets import Vault
from services.core.settings import Settings
from services.core.store import client as store
from services.core.store.apps import Apps
from services.core.store.indexes import ensure_indexes
from services.ingest import admin as admin_api
from services.ingest import cij, masiv, native, routee
from services.ingest.limits import Limits, refusal
from services.ingest.registry import Registry
from services.ingest.sending import Sends


def create_app(settings: Settings) -> FastAPI:
    """The ingest app. Kafka topics, the producer and the store connect on start-up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await kafka.ensure_topics(settings)
        mongo = store.connect(settings)
        db = store.database(mongo)
        await ensure_indexes(db)
        producer = kafka.producer(settings, client_id="pushline-ingest")
        await producer.start()
        admin = kafka.admin_client(settings)
        await admin.start()
        app.state.db = db
        app.state.producer = producer
        app.state.registry = Registry(
            db,
            Apps(db, Vault(settings.master_key)),
            producer,
            settings.scoped(topics.REGISTRATIONS.name),
            publish_timeout=settings.publish_timeout_seconds,
            allow_private=settings.webhook_allow_private,
        )
        app.state.sends = Sends(db, producer, settings)
        app.state.readiness = Readiness(db, admin)
        try:
            yield
        finally:
            await app.state.readiness.close()
            await producer.stop()
            await mongo.close()

    app = FastAPI(title="Pushline ingest", version="1", lifespan=lifespan)
    # Added first, so it runs inside _observe: its refusals are counted too.
    app.add_middleware(
        Limits, max_body=settings.max_body_bytes, max_in_flight=settings.ingest_max_in_flight
    )
    app.middleware("http")(_observe)
    app.add_exception_handler(admin_api.Unauthorized, admin_api.unauthorized)
    app.add_exception_handler(KafkaUnavailableError, _kafka_unavailable)
    for router in (native.router, routee.router, cij.router, masiv.router):
        app.include_router(router)
    app.include_router(admin_api.routes(settings.admin_token))

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz(request: Request) -> JSONResponse:
        """Ready to take traffic: the store and Kafka both answer."""
        checks = await request.app.state.readiness.check()
        ready = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "unready", **checks},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


async def _observe(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Count and time every request by its route template (never by raw path)."""
    started = time.perf_counter()
    response = await call_next(request)
    route = _route_of(request)
    metrics.INGEST_REQUESTS.labels(route, str(response.status_code)).inc()
    metrics.INGEST_LATENCY.labels(route).observe(time.perf_counter() - started)
    return response


async def _kafka_unavailable(request: Request, exc: Exception) -> Response:
    # Nothing was accepted: the caller may retry the whole request.
    return refusal(request.url.path, 503, "the pipeline is unavailable; retry later")


def _route_of(request: Request) -> str:
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is Match.FULL:
            return str(getattr(route, "path", "other"))
    return "unmatched"
